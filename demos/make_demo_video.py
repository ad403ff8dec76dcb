"""Make the face-unlock test video from the bundled NASA photos (no camera needed).

    python demos/make_demo_video.py [--out out/demo_video.mp4] [--fps 15] [--size 640 480]

The video pans and zooms across the shared photos like a hand-held camera would,
so ``demos/face_unlock.py`` can be run (and tested) on a machine without a camera:

1. 0.6 s of ISS equipment, no face;
2. Eileen Collins' portrait (an unknown person for a gallery holding Andrew Morgan);
3. Nick Hague's portrait (another unknown);
4. the ISS photo of Morgan and Hague: wide shot, zoom to both, close on Hague,
   then pan to Morgan and hold;
5. the ISS photo of Morgan alone, zooming in.

Morgan's face is never shown from his portrait ``Andrew_Morgan.jpg``, the photo
the tests enrol him from, so an unlock on this video is a match across photos,
not a photo matched with itself.

Codec: ``.mp4`` is written with ``mp4v`` (MPEG-4 part 2) and ``.avi`` with
``MJPG``: both are encoded by the FFmpeg inside the ``opencv-python(-headless)``
wheels and read back by ``cv2.VideoCapture`` (checked after writing). H.264
(``avc1``) is not offered because those wheels ship no H.264 encoder.

Photos: public-domain NASA imagery (see data/faces/README.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "faces" / "demo"

#: Scenes: (photo, seconds, keyframes). A keyframe is the camera window's centre
#: (x, y) and width in the photo's own pixels; the height follows from the output
#: aspect ratio. Face positions were read off the photos once (faces of 200-450 px
#: in the 5568x3712 ISS photos), so the video is the same on every machine.
SCENES: list[tuple[str, float, list[tuple[float, float, float]]]] = [
    ("Morgan_and_Hague_ISS.jpg", 0.6, [(800, 1900, 1500), (950, 1850, 1400)]),
    ("Eileen_Collins.png", 1.6, [(235, 170, 520), (228, 150, 400), (226, 140, 380)]),
    ("Nick_Hague.jpg", 1.4, [(380, 470, 1100), (372, 450, 900)]),
    ("Morgan_and_Hague_ISS.jpg", 4.0, [(2784, 1856, 5568), (3000, 1150, 2600), (3385, 960, 1300),
                                       (3385, 960, 1300), (2575, 1150, 1300), (2575, 1150, 1200),
                                       (2575, 1150, 1200)]),
    ("Andrew_Morgan_ISS.jpg", 1.6, [(2160, 1040, 2100), (2160, 1030, 1500)]),
]

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def _smooth(t: float) -> float:
    """Ease in/out (smoothstep) so pans start and stop like a hand, not a robot."""
    return t * t * (3.0 - 2.0 * t)


def _window(keys: list[tuple[float, float, float]], u: float) -> tuple[float, float, float]:
    """Camera window at scene progress ``u`` in [0, 1], interpolated between keyframes."""
    if len(keys) == 1:
        return keys[0]
    pos = u * (len(keys) - 1)
    i = min(int(pos), len(keys) - 2)
    f = _smooth(pos - i)
    a, b = np.asarray(keys[i], float), np.asarray(keys[i + 1], float)
    return tuple(a + (b - a) * f)


def render(photo_bgr: np.ndarray, cx: float, cy: float, win_w: float, size: tuple[int, int]) -> np.ndarray:
    """Cut the window out of the photo (grey outside it) and resize it to ``size`` (w, h), BGR."""
    import cv2

    out_w, out_h = size
    win_h = win_w * out_h / out_w
    x0, y0 = int(round(cx - win_w / 2)), int(round(cy - win_h / 2))
    x1, y1 = x0 + int(round(win_w)), y0 + int(round(win_h))
    h, w = photo_bgr.shape[:2]
    canvas = np.full((y1 - y0, x1 - x0, 3), 60, np.uint8)  # dark grey beyond the photo's edge
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = photo_bgr[sy0:sy1, sx0:sx1]
    # INTER_AREA when shrinking: a 5568 px window becomes 640 px without aliasing.
    interp = cv2.INTER_AREA if canvas.shape[1] > out_w else cv2.INTER_LINEAR
    return cv2.resize(canvas, (out_w, out_h), interpolation=interp)


def make_video(out: Path, fps: float = 15.0, size: tuple[int, int] = (640, 480)) -> int:
    """Write the video; return the number of frames read back from the file.

    Raises:
        SystemExit: OpenCV is missing, cannot encode this container, or the file
            does not read back.
    """
    try:
        import cv2
    except ImportError:
        raise SystemExit("OpenCV is needed to write video: pip install 'edgelite[vision]'") from None
    codec = CODECS.get(out.suffix.lower())
    if codec is None:
        raise SystemExit(f"unsupported video extension {out.suffix!r}; use one of {', '.join(CODECS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise SystemExit(f"this OpenCV build cannot write {codec} into {out.suffix} files; try --out x.avi")
    photos: dict[str, np.ndarray] = {}
    written = 0
    try:
        for name, seconds, keys in SCENES:
            if name not in photos:
                # OpenCV's own reader: this script writes BGR video, so BGR pixels are
                # what we want here (edgelite.load_image would give RGB).
                img = cv2.imread(str(DEMO / name), cv2.IMREAD_COLOR)
                if img is None:
                    raise SystemExit(f"cannot read {DEMO / name}")
                photos[name] = img
            n = max(1, int(round(seconds * fps)))
            for k in range(n):
                cx, cy, win_w = _window(keys, k / max(1, n - 1))
                writer.write(render(photos[name], cx, cy, win_w, size))
                written += 1
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(out))
    read = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        read += 1
    cap.release()
    if read != written:
        raise SystemExit(f"wrote {written} frames to {out} but could read back only {read}")
    return read


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "out" / "demo_video.mp4"), help="output .mp4 (mp4v) or .avi (MJPG)")
    ap.add_argument("--fps", type=float, default=15.0, help="frames per second")
    ap.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"), help="frame size")
    args = ap.parse_args(argv)
    out = Path(args.out)
    n = make_video(out, args.fps, tuple(args.size))
    print(f"wrote {out}: {n} frames, {args.size[0]}x{args.size[1]} at {args.fps:g} fps "
          f"({n / args.fps:.1f} s, {out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
