"""Issue 11, memory and time bounds on hostile images.

The hostile files are generated here, byte by byte (a few KB each), and are valid
images: the same constructions at 64 x 48 decode with OpenCV and Pillow (checked
below). Peak RSS is measured in a fresh subprocess; the bound (300 MB) is a memory
bound, generous against the ~100 MB an interpreter with numpy + OpenCV needs, and
far below the 1.6-4 GB the decoders reach on these files.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import ImageError
from edgelite.image import load_image

ROOT = Path(__file__).resolve().parents[1]
RSS_BOUND_MB = 300


def g4_tiff(w: int, h: int, rows_per_strip: int = 256) -> bytes:
    """1-bit CCITT group-4 TIFF of an all-white page: one V0 code (1 bit) per row.

    Several strips, as a scanner writes them (OpenCV refuses one huge strip, but
    decodes this 5 KB file of 32000 x 32000 into a 1 GB array).
    """
    strips = []
    for first in range(0, h, rows_per_strip):
        bits = "1" * min(rows_per_strip, h - first) + "000000000001" * 2  # rows, then EOFB
        bits += "0" * (-len(bits) % 8)
        strips.append(int(bits, 2).to_bytes(len(bits) // 8, "big"))
    n = len(strips)
    offs_at = 8 + 2 + 12 * 10 + 4
    counts_at = offs_at + 4 * n
    offsets = [counts_at + 4 * n + sum(len(x) for x in strips[:k]) for k in range(n)]
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 1), (259, 3, 1, 4), (262, 3, 1, 0),
            (273, 4, n, offs_at if n > 1 else offsets[0]), (277, 3, 1, 1), (278, 4, 1, rows_per_strip),
            (279, 4, n, counts_at if n > 1 else len(strips[0])), (293, 4, 1, 0)]
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)))
    for tag, typ, cnt, val in tags:
        out += struct.pack("<HHIHH", tag, typ, cnt, val, 0) if typ == 3 else struct.pack("<HHII", tag, typ, cnt, val)
    out += struct.pack("<I", 0) + struct.pack(f"<{n}I", *offsets) + struct.pack(f"<{n}I", *map(len, strips))
    return bytes(out + b"".join(strips))


def vp8l_webp(w: int, h: int) -> bytes:
    """Lossless WebP of a constant image: five one-symbol prefix codes, zero bits per pixel."""
    fields = [(w - 1, 14), (h - 1, 14), (0, 1), (0, 3), (0, 1), (0, 1), (0, 1)]
    fields += [(1, 1), (0, 1), (0, 1), (0, 1)] * 5
    acc = n = 0
    for val, nb in fields:
        acc |= val << n
        n += nb
    payload = (b"\x2f" + acc.to_bytes((n + 7) // 8, "little")).ljust(14, b"\x00")
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def test_the_hostile_constructions_are_real_images():
    from PIL import Image

    for data in (g4_tiff(64, 48, 16), vp8l_webp(64, 48)):
        assert load_image(data).shape == (48, 64, 3)
        assert load_image(data, use_cv2=False).shape == (48, 64, 3)
        assert np.asarray(Image.open(io.BytesIO(data))).shape[:2] == (48, 64)


_CHILD = """
import json, resource, sys
from edgelite.errors import ImageError
from edgelite.image import load_image
try:
    load_image(sys.argv[1], use_cv2=None if sys.argv[2] == "auto" else sys.argv[2] == "cv2")
    out = {"error": None}
except ImageError as e:
    out = {"error": "ImageError", "message": str(e)}
except BaseException as e:
    out = {"error": type(e).__name__, "message": str(e)[:300]}
# VmHWM: this process's own peak. ru_maxrss is no good here: exec() folds the forking
# parent's high-water mark (a pytest process with TensorFlow loaded) into it.
try:
    out["peak_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


@pytest.mark.parametrize("decoder", ["cv2", "pil"])
@pytest.mark.parametrize("kind", ["tiff", "webp"])
def test_bombs_are_refused_from_the_header_with_small_peak_rss(tmp_path, kind, decoder):
    data = g4_tiff(32000, 32000) if kind == "tiff" else vp8l_webp(16383, 16383)
    assert len(data) < 30_000  # 5.5 KB and 34 bytes
    p = tmp_path / f"bomb.{kind}"
    p.write_bytes(data)
    r = subprocess.run([sys.executable, "-c", _CHILD, str(p), decoder], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["error"] == "ImageError", out
    assert "exceeds max_pixels" in out["message"] or "decompression-bomb" in out["message"], out
    assert out["peak_mb"] < RSS_BOUND_MB, out


_SPECIAL = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression must not eat the machine
from edgelite.errors import ImageError
from edgelite.image import load_image
try:
    load_image(sys.argv[1])
except ImageError as e:
    print("ImageError", e)
"""


@pytest.mark.parametrize("kind", ["devzero", "fifo"])
def test_special_files_are_refused_at_once(tmp_path, kind):
    """/dev/zero read until MemoryError; a FIFO blocked forever. Both are refused without reading."""
    if kind == "devzero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        path, what = "/dev/zero", "character device"
    else:
        path, what = tmp_path / "camera.jpg", "FIFO"
        os.mkfifo(path)
    try:
        r = subprocess.run([sys.executable, "-c", _SPECIAL, str(path)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_image({path}) blocked")
    assert r.stdout.startswith("ImageError") and what in r.stdout, r.stdout + r.stderr[-500:]


def test_max_bytes_caps_what_is_read(tmp_path):
    src = ROOT / "data" / "faces" / "demo" / "Eileen_Collins.png"
    n = src.stat().st_size
    with pytest.raises(ImageError, match="max_bytes"):
        load_image(src, max_bytes=n - 1)
    assert load_image(src, max_bytes=n).shape == (512, 512, 3)
    assert load_image(src, max_bytes=None).shape == (512, 512, 3)
    with pytest.raises(ImageError, match="max_bytes must be"):
        load_image(src, max_bytes=0)


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "PPM", "TIFF", "WEBP"])
def test_every_format_is_sized_from_its_header(fmt):
    """A 20 x 10 image in each format is refused by a 199-pixel cap before decoding."""
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(b, fmt)
    with pytest.raises(ImageError, match=r"20x10 = 0\.0 MP exceeds max_pixels=199"):
        load_image(b.getvalue(), max_pixels=199)
    assert load_image(b.getvalue(), max_pixels=200).shape == (10, 20, 3)


def test_unknown_format_is_not_decoded_blind():
    with pytest.raises(ImageError, match="not a decodable image"):
        load_image(b"\x76\x2f\x31\x01" + bytes(64))  # OpenEXR magic: size unknown to us
