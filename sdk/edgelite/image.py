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
* Images above ``max_pixels`` (default 100 MP) are refused *before* decoding, to
  stop decompression bombs from exhausting a Raspberry Pi's memory (a 26 KB
  group-4 TIFF can declare 32000 x 32000 pixels, a 30-byte WebP 16383 x 16383).
  The size is read from the header by our own parsers (PNG, JPEG, TIFF/BigTIFF,
  WebP, BMP, GIF, PNM) or by Pillow's header reader; a file whose size cannot be
  read that way is refused as not decodable, since its cost is unknown (pass
  ``max_pixels=None`` to hand it to the decoder anyway).
* Paths must name regular files (``/dev/zero`` or a FIFO would read forever or
  block), and at most ``max_bytes`` (default 256 MiB) are read.
"""
from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path
from typing import Any, Union

import numpy as np

from ._optional import resolve_cv2
from .errors import ImageError, ImageNotFoundError, ImageTooLargeError

#: Default cap on decoded image size (pixels). A 100 MP RGB image is 300 MB.
DEFAULT_MAX_PIXELS: int = 100_000_000
#: Default cap on the bytes read from an image file. Larger than any sane encoded
#: photo (a 100 MP uncompressed 8-bit RGB TIFF is 300 MB, but such files are not
#: what a camera or phone produces); raise it with ``max_bytes=``.
DEFAULT_MAX_BYTES: int = 256 * 1024 * 1024

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


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the first IFD of a classic or BigTIFF file."""
    if len(data) < 16:
        return None
    bo = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(bo + "H", data[2:4])
    if version == 42:
        (off,) = struct.unpack(bo + "I", data[4:8])
        cnt_fmt, cnt_size, entry_size, val_off = "H", 2, 12, 8
    elif version == 43:
        (off,) = struct.unpack(bo + "Q", data[8:16])
        cnt_fmt, cnt_size, entry_size, val_off = "Q", 8, 20, 12
    else:
        return None
    if off + cnt_size > len(data):
        return None
    (n,) = struct.unpack(bo + cnt_fmt, data[off : off + cnt_size])
    w = h = None
    for k in range(min(int(n), 4096)):
        e = off + cnt_size + k * entry_size
        if e + entry_size > len(data):
            break
        tag, typ = struct.unpack(bo + "HH", data[e : e + 4])
        if tag not in (256, 257):
            continue
        v = data[e + val_off : e + val_off + 8]
        if typ == 3:  # SHORT
            (val,) = struct.unpack(bo + "H", v[:2])
        elif typ == 4:  # LONG
            (val,) = struct.unpack(bo + "I", v[:4])
        elif typ == 16 and len(v) == 8:  # LONG8 (BigTIFF)
            (val,) = struct.unpack(bo + "Q", v)
        else:
            return None
        if tag == 256:
            w = val
        else:
            h = val
    return (w, h) if w is not None and h is not None else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP's first chunk (VP8, VP8L or VP8X canvas)."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a P1-P6 PNM header (comments allowed)."""
    tokens: list[bytes] = []
    pos, n = 2, min(len(data), 4096)
    while len(tokens) < 2 and pos < n:
        c = data[pos : pos + 1]
        if c == b"#":
            nl = data.find(b"\n", pos)
            pos = n if nl < 0 else nl + 1
        elif c.isspace():
            pos += 1
        else:
            end = pos
            while end < n and data[end : end + 1].isdigit():
                end += 1
            if end == pos:
                return None
            tokens.append(data[pos:end])
            pos = end
    return (int(tokens[0]), int(tokens[1])) if len(tokens) == 2 else None


def _peek_size(data: bytes, max_pixels: int | None = None, label: str = "image") -> tuple[int, int] | None:
    """(width, height) from the header without decoding, or ``None`` when unknown.

    Raises:
        ImageError: Pillow's own decompression-bomb guard fired while reading the
            header and a pixel cap is set (the image is far above any sane cap).
    """
    if data[:8] == _PNG_SIG and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:2] == b"\xff\xd8":
        size = _jpeg_walk(data)[0]
        if size is not None:
            return size
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        size = _tiff_size(data)
        if size is not None:
            return size
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
        if size is not None:
            return size
    elif data[:2] == b"BM" and len(data) >= 26:
        (hdr,) = struct.unpack("<I", data[14:18])
        if hdr == 12:
            w, h = struct.unpack("<HH", data[18:22])
        else:
            w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    elif data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        size = _pnm_size(data)
        if size is not None:
            return size
    try:
        from PIL import Image  # noqa: PLC0415  (optional)
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            return im.size
    except Image.DecompressionBombError as exc:
        # Pillow refuses > 2x its MAX_IMAGE_PIXELS (~179 MP) in open(): that is
        # an answer, not an unknown header. Swallowing it let OpenCV decode the
        # whole bomb first.
        if max_pixels is not None:
            raise ImageError(
                f"{label}: refused before decoding: Pillow's decompression-bomb guard says {exc}; "
                f"max_pixels={max_pixels:,}"
            ) from None
        return None
    except Exception:  # noqa: BLE001 - unknown to Pillow too
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
        raise ImageTooLargeError(f"{label}: refused by Pillow's decompression-bomb guard ({exc})") from exc
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
        raise ImageTooLargeError(
            f"{label}: {w}x{h} = {w * h / 1e6:.1f} MP exceeds max_pixels={max_pixels:,}; "
            "pass a larger max_pixels (or None) if you really mean to decode it"
        )


def _read_file(path: Path, max_bytes: int | None) -> bytes:
    """Read a regular file, at most ``max_bytes``; devices, FIFOs and sockets are refused.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a
    writer; the type is then checked on the open descriptor (no race with a
    rename between a stat and the open).
    """
    label = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageNotFoundError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{label}: is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                    else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "not a regular file")
            raise ImageError(f"{label}: is {kind}; images are read from regular files only "
                             "(read the bytes yourself and pass them to load_image if you mean it)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise ImageTooLargeError(f"{label}: file is {st.st_size:,} bytes, over max_bytes={max_bytes:,}; "
                             "pass a larger max_bytes if you really mean to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        limit = (max_bytes if max_bytes is not None else st.st_size) + 1
        chunks, total = [], 0
        while total < limit:
            block = os.read(fd, min(1 << 20, limit - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
        data = b"".join(chunks)
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:  # the file grew while we read it
        raise ImageTooLargeError(f"{label}: more than max_bytes={max_bytes:,} bytes; pass a larger max_bytes")
    return data


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    use_cv2: bool | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
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
        max_bytes: read at most this many bytes from a path (default 256 MiB);
            ``None`` disables the cap. Paths must name regular files.

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
    if max_pixels is not None and (not isinstance(max_pixels, int) or isinstance(max_pixels, bool)
                                   or max_pixels <= 0):
        raise ImageError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0):
        raise ImageError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = f"<{len(data)} bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        data = _read_file(path, max_bytes)
    else:
        raise ImageError(
            f"cannot load an image from {type(source).__name__}; pass a path, bytes or a numpy array"
        )
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes)")
    size = _peek_size(data, max_pixels, label)
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels, label)
    elif max_pixels is not None:
        # Decoding a format whose size we cannot read first could cost any amount
        # of memory: refuse it (max_pixels=None opts out).
        raise ImageError(
            f"{label}: not a decodable image: unknown or unsupported format, its size cannot be read "
            f"before decoding (first bytes {data[:8]!r}); pass max_pixels=None to try the decoder anyway"
        )
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
    "DEFAULT_MAX_BYTES",
    "ImageSource",
    "load_image",
    "as_rgb",
    "check_image",
    "to_bgr",
    "from_bgr",
]
