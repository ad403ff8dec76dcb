"""edgelite.image: loading rules and every bad-input case, on both decoders."""
from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import EdgeliteError, ImageError, ImageNotFoundError
from edgelite.image import as_rgb, check_image, from_bgr, load_image, to_bgr

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
DEMO = FACES / "demo"

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

# OpenCV path first, then Pillow; only Pillow when the vision extra lacks OpenCV.
DECODERS = [True, False] if importlib.util.find_spec("cv2") else [False]


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(b, "PNG") if mode else Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


# ----------------------------------------------------------------------------- good inputs


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_load_real_files(use_cv2):
    jpg = load_image(DEMO / "Andrew_Morgan.jpg", use_cv2=use_cv2)
    assert jpg.shape == (1132, 770, 3) and jpg.dtype == np.uint8 and jpg.flags.c_contiguous
    png = load_image(str(DEMO / "Eileen_Collins.png"), use_cv2=use_cv2)
    assert png.shape == (512, 512, 3)
    pgm = load_image(FACES / "orl" / "s1" / "1.pgm", use_cv2=use_cv2)
    assert pgm.shape == (112, 92, 3)
    assert np.array_equal(pgm[..., 0], pgm[..., 1]) and np.array_equal(pgm[..., 0], pgm[..., 2])


def test_decoders_agree_on_demo_photos():
    pytest.importorskip("cv2")
    for name in ("Andrew_Morgan.jpg", "Eileen_Collins.png"):
        a = load_image(DEMO / name, use_cv2=True)
        b = load_image(DEMO / name, use_cv2=False)
        # Measured identical (both wheels bundle libjpeg-turbo); allow IDCT variation.
        assert np.abs(a.astype(np.int16) - b).max() <= 2, name


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_channel_order_is_rgb(use_cv2, tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[..., 0] = 200  # red, as PIL writes RGB
    arr[..., 2] = 10
    p = tmp_path / "red.png"
    p.write_bytes(_png(arr))
    img = load_image(p, use_cv2=use_cv2)
    np.testing.assert_array_equal(img[0, 0], [200, 0, 10])


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_bytes_and_memoryview_sources(use_cv2):
    data = (DEMO / "Eileen_Collins.png").read_bytes()
    a = load_image(data, use_cv2=use_cv2)
    b = load_image(memoryview(data), use_cv2=use_cv2)
    c = load_image(bytearray(data), use_cv2=use_cv2)
    assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_rgba_drops_alpha_without_compositing(use_cv2):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[...] = [100, 150, 200, 0]  # fully transparent, colour kept
    img = load_image(_png(rgba, "RGBA"), use_cv2=use_cv2)
    assert img.shape == (5, 7, 3)
    np.testing.assert_array_equal(img[2, 3], [100, 150, 200])
    la = np.zeros((5, 7, 2), np.uint8)
    la[...] = [77, 10]
    img = load_image(_png(la, "LA"), use_cv2=use_cv2)
    np.testing.assert_array_equal(img[0, 0], [77, 77, 77])


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_16bit_keeps_top_byte(use_cv2):
    vals = np.array([[0, 0x1234, 0xFFFF, 200 * 257]], dtype=np.uint16)
    b = io.BytesIO()
    Image.fromarray(vals).save(b, "PNG")  # 16-bit greyscale PNG
    img = load_image(b.getvalue(), use_cv2=use_cv2)
    # >> 8: exact for 8-bit data stored as 16-bit (200 * 257 -> 200), no stretching.
    np.testing.assert_array_equal(img[0, :, 0], [0, 0x12, 0xFF, 200])


def test_16bit_colour_png_via_opencv():
    cv2 = pytest.importorskip("cv2")
    bgr16 = np.zeros((3, 3, 3), np.uint16)
    bgr16[...] = [0x0100, 0x8000, 0xFF00]  # B, G, R
    ok, enc = cv2.imencode(".png", bgr16)
    assert ok
    img = load_image(enc.tobytes(), use_cv2=True)
    np.testing.assert_array_equal(img[0, 0], [0xFF, 0x80, 0x01])  # RGB, top bytes


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_exif_orientation_is_applied(use_cv2):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = [255, 0, 0]  # red stripe on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    b = io.BytesIO()
    im.save(b, "JPEG", exif=exif.tobytes(), quality=95)
    img = load_image(b.getvalue(), use_cv2=use_cv2)
    assert img.shape == (40, 20, 3)
    assert img[:8, :, 0].mean() > 200 and img[-8:, :, 0].mean() < 50  # stripe now on top


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageNotFoundError, match="nope.jpg"):
        load_image(p)
    with pytest.raises(FileNotFoundError):  # the builtin idiom works too
        load_image(p)
    with pytest.raises(EdgeliteError):
        load_image(p)


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_empty_file(tmp_path, use_cv2):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png.*empty"):
        load_image(p, use_cv2=use_cv2)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_not_an_image(tmp_path, use_cv2):
    p = tmp_path / "notes.jpg"
    p.write_text("this is a text file, not a JPEG\n")
    with pytest.raises(ImageError, match=r"notes\.jpg.*not a decodable image"):
        load_image(p, use_cv2=use_cv2)


@pytest.mark.parametrize("use_cv2", DECODERS)
@pytest.mark.parametrize("keep", [0.5, 0.99, "no-eoi"])
def test_truncated_jpeg(tmp_path, use_cv2, keep):
    data = (DEMO / "Andrew_Morgan.jpg").read_bytes()
    cut = data[:-2] if keep == "no-eoi" else data[: int(len(data) * keep)]
    p = tmp_path / "cut.jpg"
    p.write_bytes(cut)
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(p, use_cv2=use_cv2)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_truncated_png(tmp_path, use_cv2):
    data = (DEMO / "Eileen_Collins.png").read_bytes()
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png"):
        load_image(p, use_cv2=use_cv2)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_pixel_cap_refuses_before_decoding(tmp_path, use_cv2):
    # A tiny PNG whose header claims 30000 x 20000 (600 MP): refused from the header
    # alone, so a decompression bomb never gets decoded.
    data = bytearray(_png(np.zeros((1, 1, 3), np.uint8)))
    data[16:24] = struct.pack(">II", 30000, 20000)
    p = tmp_path / "bomb.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"bomb\.png.*600\.0 MP exceeds max_pixels"):
        load_image(p, use_cv2=use_cv2)


@pytest.mark.parametrize("use_cv2", DECODERS)
def test_pixel_cap_override(use_cv2):
    path = DEMO / "Eileen_Collins.png"  # 512 x 512 = 262144 px
    with pytest.raises(ImageError, match="max_pixels=100,000"):
        load_image(path, max_pixels=100_000, use_cv2=use_cv2)
    assert load_image(path, max_pixels=262_144, use_cv2=use_cv2).shape == (512, 512, 3)
    assert load_image(path, max_pixels=None, use_cv2=use_cv2).shape == (512, 512, 3)
    with pytest.raises(ImageError, match="max_pixels must be"):
        load_image(path, max_pixels=0)


def test_float_tiff_is_refused():
    cv2 = pytest.importorskip("cv2")
    ok, enc = cv2.imencode(".tiff", np.random.default_rng(0).random((4, 4, 3)).astype(np.float32))
    assert ok
    with pytest.raises(ImageError, match="floating-point"):
        load_image(enc.tobytes(), use_cv2=True)


def test_float_tiff_is_refused_by_pillow():
    b = io.BytesIO()
    Image.fromarray(np.ones((4, 4), np.float32), mode="F").save(b, "TIFF")
    with pytest.raises(ImageError, match="floating-point"):
        load_image(b.getvalue(), use_cv2=False)


def test_bad_source_type():
    with pytest.raises(ImageError, match="cannot load an image from int"):
        load_image(42)


# ----------------------------------------------------------------------------- arrays


def test_array_sources():
    rgb = np.zeros((4, 5, 3), np.uint8)
    assert load_image(rgb) is rgb  # contiguous RGB: validated, not copied
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = load_image(grey)
    assert out.shape == (4, 5, 3) and np.array_equal(out[..., 2], grey)
    assert load_image(grey[:, :, None]).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 9
    assert load_image(rgba).shape == (4, 5, 3) and load_image(rgba).max() == 0


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((4, 5, 3), np.float32), r"float32.*\* 255"),
        (np.zeros((4, 5, 3), np.float64), "convert it to uint8"),
        (np.zeros((4, 5, 3), np.uint16), r">> 8"),
        (np.zeros((4, 5, 3), bool), "bool"),
        (np.zeros((4, 5, 5), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((3, 64, 64), np.uint8), "channels-first"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((2, 4, 5, 3), np.uint8), "HW or HWC"),
    ],
)
def test_bad_arrays(arr, match):
    with pytest.raises(ImageError, match=match):
        load_image(arr)


def test_as_rgb_rejects_non_arrays():
    with pytest.raises(ImageError, match="numpy array"):
        as_rgb([[1, 2], [3, 4]])


def test_bgr_helpers_and_strict_check():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    bgr = to_bgr(rgb)
    np.testing.assert_array_equal(bgr[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(from_bgr(bgr), rgb)
    assert bgr.flags.c_contiguous
    assert check_image(rgb) is rgb
    for bad in (rgb[..., 0], rgb.astype(np.float32), np.zeros((2, 3, 4), np.uint8), "img.jpg"):
        with pytest.raises(ImageError):
            check_image(bad)
