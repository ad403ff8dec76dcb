"""Image loading and validation: everything becomes HWC ``uint8`` **RGB**.

edgelite's one image convention is a numpy ``(H, W, 3)`` ``uint8`` array in RGB
order. OpenCV (``cv2.imread``, ``cv2.VideoCapture``) hands out **BGR**; convert at
that boundary with :func:`from_bgr` and back with :func:`to_bgr`.

:func:`load_image` decodes with OpenCV when it is installed (the ``vision`` extra)
and with Pillow otherwise. Both paths apply the same rules:

* EXIF orientation is applied (a phone portrait comes out upright; a sideways
  face would not be detected).
* Grey images are replicated to three channels.
* Alpha is **dropped**, not composited: the stored colour is what the camera or
  editor produced, and compositing on black would darken soft edges. This is also
  what ``cv2.imread(path)`` does. Composite yourself first if transparent regions
  hold junk colours.
* 16-bit images keep their top 8 bits (``value >> 8``), as ``cv2.imread`` does.
  This is exact for 8-bit data stored as 16-bit (``v * 257 >> 8 == v``) and, unlike
  stretching by the image's maximum, gives the same pixels for the same scene.
* Float (HDR) images are refused: there is no right tone mapping to guess.
* Images above ``max_pixels`` (default 100 MP) are refused *before* decoding when
  the header can be read (PNG/JPEG, or any format with Pillow), to stop
  decompression bombs from exhausting a Raspberry Pi's memory.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any, Union

import numpy as np

from ._optional import resolve_cv2
from .errors import ImageError, ImageNotFoundError

#: Default cap on decoded image size (pixels). A 100 MP RGB image is 300 MB.
DEFAULT_MAX_PIXELS: int = 100_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

_FLOAT_HINT = (
    "convert it to uint8 first, e.g. (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8) "
    "for values in [0, 1]"
)


# --------------------------------------------------------------------------- arrays


def as_rgb(array: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Validate an in-memory image and return it as HWC ``uint8`` RGB.

    The array is trusted to be RGB already (an array does not say its channel
    order; use :func:`from_bgr` for OpenCV frames). Accepted layouts: ``(H, W)``
    grey, ``(H, W, 1)`` grey, ``(H, W, 3)`` RGB (returned without copying when
    contiguous), ``(H, W, 4)`` RGBA (alpha dropped).

    Raises:
        ImageError: not an array, empty, wrong rank/channels, or not ``uint8``
            (the message says how to convert).
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.size == 0:
        raise ImageError(f"{what} is empty (shape {array.shape})")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            raise ImageError(f"{what} has dtype {array.dtype}; edgelite images are uint8 RGB: {_FLOAT_HINT}")
        if array.dtype == np.uint16:
            raise ImageError(
                f"{what} has dtype uint16; convert to 8-bit first, e.g. (img >> 8).astype(np.uint8)"
            )
        raise ImageError(f"{what} has dtype {array.dtype}; edgelite images are uint8 RGB (HWC)")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3:
        raise ImageError(f"{what} must be HW or HWC, got shape {array.shape}")
    c = array.shape[2]
    if c == 3:
        return np.ascontiguousarray(array)
    if c == 1:
        return np.repeat(array, 3, axis=2)
    if c == 4:
        return np.ascontiguousarray(array[:, :, :3])
    hint = ""
    if array.shape[0] in (1, 3, 4):
        hint = "; it looks channels-first (CHW): use img.transpose(1, 2, 0)"
    raise ImageError(f"{what} must have 1, 3 or 4 channels (HWC), got shape {array.shape}{hint}")


def check_image(image: Any, *, what: str = "image") -> np.ndarray:
    """Strict check for APIs that take an image: HWC ``uint8`` with 3 channels.

    Unlike :func:`as_rgb` nothing is converted, so a caller passing grey or RGBA
    finds out instead of silently getting a different image.

    Returns:
        The image as a contiguous array.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"{what} must be a numpy HWC uint8 RGB array, got {type(image).__name__}; "
            "use edgelite.image.load_image() for files and bytes"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ImageError(
            f"{what} must be HWC uint8 RGB with 3 channels, got dtype {image.dtype} shape {image.shape}; "
            "edgelite.image.as_rgb() converts grey/RGBA"
        )
    return np.ascontiguousarray(image)


def to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    """RGB -> BGR copy for handing an edgelite image to OpenCV (``cv2.imwrite``, ``cv2.imshow``)."""
    img = check_image(image_rgb, what="image_rgb")
    return np.ascontiguousarray(img[:, :, ::-1])


def from_bgr(image_bgr: np.ndarray) -> np.ndarray:
    """BGR -> RGB copy for OpenCV frames (``cv2.imread``, ``cv2.VideoCapture.read``)."""
    img = check_image(image_bgr, what="image_bgr")
    return np.ascontiguousarray(img[:, :, ::-1])


# --------------------------------------------------------------------------- headers

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# SOF markers carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) share the range but do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_walk(data: bytes) -> tuple[tuple[int, int] | None, int | None]:
    """Walk JPEG header segments: return ((width, height) or None, offset of first SOS or None)."""
    size = None
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return size, None  # corrupt header
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF and pos + 9 <= n:
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (w, h)
        if marker == 0xDA:
            return size, pos
        pos += 2 + length
    return size, None


def _peek_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header without decoding, when we can tell cheaply."""
    if data[:8] == _PNG_SIG and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:2] == b"\xff\xd8":
        return _jpeg_walk(data)[0]
    try:
        from PIL import Image  # noqa: PLC0415  (optional)
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            return im.size
    except Exception:  # noqa: BLE001 - unknown to Pillow: let the decoder report it
        return None


def _jpeg_truncated(data: bytes) -> bool:
    """True if a JPEG stops before its end-of-image marker.

    Old OpenCV builds (e.g. distro 4.5/4.6) decode a truncated JPEG into a grey-filled
    image with only a warning on stderr; we want an error. Inside entropy-coded data
    0xFF is always followed by 0x00 or a restart marker, so the first FFD9 after the
    first SOS is the real end-of-image.
    """
    _, sos = _jpeg_walk(data)
    return sos is None or data.find(b"\xff\xd9", sos) < 0


# --------------------------------------------------------------------------- decoding




def _to_rgb8(arr: np.ndarray, bgr: bool, label: str) -> np.ndarray:
    """Apply the depth/channel rules to a decoded array."""
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        raise ImageError(f"{label}: floating-point ({arr.dtype}) images are not supported; {_FLOAT_HINT}")
    elif arr.dtype != np.uint8:
        raise ImageError(f"{label}: unsupported sample type {arr.dtype}; save it as 8- or 16-bit")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        if bgr:
            cv2 = resolve_cv2(None)
            if cv2 is not None:  # ~70x faster than a numpy flip-and-copy on a 640x480 frame
                code = cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
                return cv2.cvtColor(np.ascontiguousarray(arr), code)
            return np.ascontiguousarray(arr[:, :, 2::-1])
        return np.ascontiguousarray(arr[:, :, :3])
    raise ImageError(f"{label}: unsupported channel layout {arr.shape}")


def _decode_cv2(cv2, data: bytes, label: str) -> np.ndarray:
    # ANYCOLOR|ANYDEPTH (not IMREAD_UNCHANGED): keeps grey and 16-bit, drops alpha,
    # and - unlike IMREAD_UNCHANGED - applies the EXIF orientation.
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"{label}: OpenCV could not decode it ({exc})") from exc
    if arr is None:
        raise ImageError(
            f"{label}: not a decodable image (corrupt, truncated, or an unsupported format; "
            f"first bytes {data[:8]!r})"
        )
    return _to_rgb8(arr, bgr=True, label=label)


def _decode_pil(data: bytes, label: str, max_pixels: int | None) -> np.ndarray:
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415
    except ImportError:
        raise ImageError(
            f"{label}: no image decoder available; install one with pip install 'edgelite[vision]'"
        ) from None
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not a decodable image (first bytes {data[:8]!r})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: refused by Pillow's decompression-bomb guard ({exc})") from exc
    with im:
        w, h = im.size
        _check_pixels(w, h, max_pixels, label)
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{label}: corrupt or truncated image ({exc})") from exc
        mode = im.mode
        if mode.startswith("I;16") or mode == "I":
            arr = np.asarray(im)
            if arr.dtype != np.uint16:
                if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
                    raise ImageError(f"{label}: 32-bit integer images are not supported; save as 8/16-bit")
                arr = arr.astype(np.uint16)
            return _to_rgb8(arr, bgr=False, label=label)
        if mode == "F":
            raise ImageError(f"{label}: floating-point images are not supported; {_FLOAT_HINT}")
        # convert('RGB') drops alpha (no compositing) and expands grey/palette/CMYK.
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _check_pixels(w: int, h: int, max_pixels: int | None, label: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(
            f"{label}: {w}x{h} = {w * h / 1e6:.1f} MP exceeds max_pixels={max_pixels:,}; "
            "pass a larger max_pixels (or None) if you really mean to decode it"
        )


def _read_file(path: Path) -> bytes:
    label = str(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    use_cv2: bool | None = None,
) -> np.ndarray:
    """Load an image as HWC ``uint8`` **RGB**.

    Args:
        source: a path (``str`` / ``os.PathLike``), encoded bytes (JPEG, PNG, PGM,
            BMP, TIFF, WebP... whatever the decoder supports), or a numpy array
            (validated with :func:`as_rgb`; assumed RGB already).
        max_pixels: refuse images with more pixels than this (default 100 MP);
            ``None`` disables the check. Not applied to arrays (already in memory).
        use_cv2: ``None`` = OpenCV if installed else Pillow; ``True`` = require
            OpenCV; ``False`` = use Pillow.

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB array. See the module docstring for how grey,
        alpha, 16-bit and EXIF orientation are handled.

    Raises:
        ImageNotFoundError: the path does not exist (also a ``FileNotFoundError``).
        ImageError: empty file, not an image, truncated/corrupt, too large,
            unsupported depth; the message names the file and the problem.
    """
    if isinstance(source, np.ndarray):
        return as_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = f"<{len(data)} bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        data = _read_file(path)
    else:
        raise ImageError(
            f"cannot load an image from {type(source).__name__}; pass a path, bytes or a numpy array"
        )
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels <= 0):
        raise ImageError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes)")
    size = _peek_size(data)
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels, label)
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        raise ImageError(f"{label}: truncated JPEG (no end-of-image marker after the image data)")
    cv2 = resolve_cv2(use_cv2)
    if cv2 is not None:
        img = _decode_cv2(cv2, data, label)
    else:
        img = _decode_pil(data, label, max_pixels)
    # Headers we could not pre-read (e.g. TIFF without Pillow): check after decoding.
    _check_pixels(img.shape[1], img.shape[0], max_pixels, label)
    return img


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageSource",
    "load_image",
    "as_rgb",
    "check_image",
    "to_bgr",
    "from_bgr",
]
