"""Face unlock for a Raspberry Pi camera (or any webcam, video file or stream).

    # enrol from photos, or from the camera (captures 5 good frames of one face)
    python demos/face_unlock.py --enroll "Andrew Morgan" --images data/faces/demo/Andrew_Morgan.jpg
    python demos/face_unlock.py --enroll "Ann"
    # unlock: exit code 0 when a known face is freshly matched on --consecutive frames,
    # 1 on timeout / end of video, 2 on error (camera lost, models missing, ...),
    # 3 when the unlock happened but the --on-unlock command failed
    python demos/face_unlock.py --headless --timeout 30 --on-unlock "/usr/local/bin/open-door"
    python demos/make_demo_video.py && python demos/face_unlock.py --camera out/demo_video.mp4 --headless

Camera: with ``--camera 0`` (the default) and picamera2 importable (Raspberry Pi
OS Bookworm, libcamera: ``sudo apt install python3-picamera2``) the Pi camera is
read through picamera2; otherwise OpenCV's ``VideoCapture`` opens a camera index,
a device path (``/dev/video0``: USB webcams via V4L2), a video file or a stream
URL (``rtsp://...``). Frames become HWC uint8 **RGB** at that boundary (OpenCV
hands out BGR; picamera2's ``RGB888`` is also laid out B, G, R in memory, see
:class:`Camera`). A live camera that fails to open, disconnects or keeps
returning empty frames is reopened with exponential backoff; when the retries
run out the script says so and exits with code 2 (``Restart=on-failure`` in a
systemd unit then brings it back, see docs/raspberry-pi.md).

Recognition: :class:`edgelite.face.FaceRecognizer` in video mode, matched
against the SQLite gallery in ``--db``. **Only fresh matches count**: a frame
counts towards the ``--consecutive`` frames of a name only when that frame's own
embedding matched the name; a name carried over by the tracker
(``RecognizedFace.reused``) never counts (it neither counts nor resets). By
default (``--reembed-every 0``) every face is embedded on every frame, so the
count is of consecutive frames; with ``--reembed-every N`` the tracker reuses
embeddings (cheaper, for slow devices) and more frames are needed. The tracker's
identity-change guard re-embeds at once a face whose appearance changed. Faces narrower than
``--min-face`` pixels are ignored: an unlock is for the person standing at the
camera, not for someone across the room.

Output: ``--headless`` prints one JSON object per line on stdout (``start``, a
``frame`` line every ``--log-every`` frames with the seconds since start, fps
over the last 30 frames, faces and per-stage latency in ms, then ``unlocked`` /
``timeout`` / ``end_of_stream`` / ``error``); without it, a status line per second goes to stderr, and ``--display`` draws
boxes and names in a window (skipped with a warning when there is no display).

``--on-unlock CMD`` runs CMD (split like a shell would, but never through a
shell) with the person's name in the environment variable ``EDGELITE_UNLOCK_NAME``
(and the score in ``EDGELITE_UNLOCK_SCORE``). Names are data: they never become
part of a command line, so a name like ``$(reboot)`` stays a string. CMD is
parsed and its program looked up at start-up (a bad quote or a missing program
is an error before the camera opens). It runs in its own process group; after
``--on-unlock-timeout`` seconds the whole group is killed (SIGTERM, then
SIGKILL), children included. A failing command (not found, non-zero exit,
timeout) is reported and the demo exits with code 3.

``--liveness`` adds the passive anti-spoofing model (MiniFASNet, see
docs/face.md): every counted frame must also be judged "real". It is a
deterrent against printed photos and screens, not a guarantee.

This is a demo of the pipeline, not a security product: see SECURITY.md for
what it does and does not protect against.

Uses only edgelite's public API. Photos: public-domain NASA imagery (see
data/faces/README.md).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

EXIT_UNLOCKED, EXIT_NO_UNLOCK, EXIT_ERROR, EXIT_HOOK_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
ENV_NAME, ENV_SCORE = "EDGELITE_UNLOCK_NAME", "EDGELITE_UNLOCK_SCORE"
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mjpeg", ".mjpg", ".m4v", ".h264"}


def default_db() -> Path:
    """``$XDG_DATA_HOME/edgelite/unlock.sqlite`` (``~/.local/share/edgelite/unlock.sqlite``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "edgelite" / "unlock.sqlite"


# ------------------------------------------------------------------------------ camera


class CameraError(RuntimeError):
    """The camera cannot be opened or keeps failing after all retries."""


class Camera:
    """Frames as HWC uint8 RGB with source timestamps, from picamera2 or OpenCV.

    Live sources (camera index, ``/dev/video*``, stream URLs, the Pi camera) are
    reopened with exponential backoff when they fail to open, stop delivering or
    return ``max_empty`` empty frames in a row. A video file is not retried: its
    end is the end of the input (:meth:`read` returns ``None``), and a missing
    file fails at once.

    Args:
        source: ``"0"`` (index), ``"/dev/video0"``, a file path or a URL.
        backend: ``"auto"`` (picamera2 for an index when importable, else OpenCV),
            ``"picamera2"`` or ``"opencv"``.
        size: requested ``(width, height)``; a camera may pick the nearest mode.
        retries: reopen attempts after a failure before :class:`CameraError`.
        retry_delay: first backoff delay in seconds, doubled per attempt (max 8 s).
        max_empty: consecutive empty reads that count as a disconnect.
        opener: ``opener(camera) -> reader`` override (tests, custom sources); a
            reader has ``read() -> (ok, frame_rgb)`` and ``release()``.
        log: called with human-readable messages about retries.
    """

    def __init__(self, source: str, *, backend: str = "auto", size: tuple[int, int] = (640, 480),
                 retries: int = 5, retry_delay: float = 0.5, max_empty: int = 30,
                 opener: Callable | None = None, log: Callable[[str], None] = lambda m: None):
        self.source = str(source)
        self.size = size
        self.retries = retries
        self.retry_delay = retry_delay
        self.max_empty = max_empty
        self.log = log
        self._opener = opener
        self._reader = None
        self._fps = 0.0
        self.frames = 0
        self.reconnects = 0
        self.kind = self._classify(backend)

    # -- what is it? ----------------------------------------------------------------
    def _classify(self, backend: str) -> str:
        s = self.source
        if self._opener is not None:
            return "custom"
        if backend == "picamera2" or (backend == "auto" and s.isdigit() and _picamera2_importable()):
            if not s.isdigit():
                raise CameraError(f"--camera-backend picamera2 needs a camera number, got {s!r}")
            return "picamera2"
        if s.isdigit() or s.startswith("/dev/"):
            return "device"
        if "://" in s:
            return "stream"
        return "file"

    @property
    def live(self) -> bool:
        """Live sources are retried; files are not."""
        return self.kind != "file"

    @property
    def describe(self) -> str:
        return f"{self.kind} {self.source}"

    # -- open / close ---------------------------------------------------------------
    def _open_once(self):
        if self._opener is not None:
            return self._opener(self)
        if self.kind == "picamera2":
            return _PiCameraReader(int(self.source), self.size)
        return _OpenCVReader(self, self.size)

    def check_source(self) -> None:
        """Fail fast on a source that cannot work, before any model is loaded.

        Raises:
            CameraError: a video file that does not exist (retrying will not create it).
        """
        if self.kind == "file" and not Path(self.source).is_file():
            raise CameraError(f"video file {self.source!r} does not exist (or is not a file); "
                              "give a camera index, a /dev/video* device, a video file or a stream URL")

    def open(self) -> None:
        """Open the source, retrying live ones with backoff.

        Raises:
            CameraError: the source cannot be opened (after the retries, for live ones).
        """
        self.check_source()
        attempts = (self.retries + 1) if self.live else 1
        last = ""
        for k in range(attempts):
            try:
                self._reader = self._open_once()
                return
            except CameraError as e:
                last = str(e)
            if k + 1 < attempts:
                delay = min(8.0, self.retry_delay * 2 ** k)
                self.log(f"camera {self.describe}: {last}; retrying in {delay:.1f} s ({k + 1}/{self.retries})")
                time.sleep(delay)
        raise CameraError(f"cannot open camera {self.describe}: {last}"
                          + (f" (gave up after {attempts} attempts)" if attempts > 1 else ""))

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.release()
            except Exception:  # noqa: BLE001 - releasing a dead camera must not mask the real error
                pass
            self._reader = None

    def __enter__(self) -> "Camera":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- frames ---------------------------------------------------------------------
    def read(self) -> tuple[np.ndarray, float] | None:
        """Next frame ``(rgb, t_seconds)``, or ``None`` at the end of a video file.

        ``t`` is the media time for files (frame index / fps, so a file plays at its
        own pace whatever the processing speed) and the monotonic clock otherwise.

        Raises:
            CameraError: a live camera stayed broken through all reconnect attempts.
        """
        if self._reader is None:
            self.open()
        empty = 0
        while True:
            ok, frame = self._reader.read()
            if ok and frame is not None and frame.size:
                self.frames += 1
                if self.kind == "file":
                    return frame, (self.frames - 1) / (self._fps or 15.0)
                return frame, time.monotonic()
            if not self.live:
                return None  # end of the file (or an undecodable tail): the input is over
            empty += 1
            if empty >= self.max_empty:
                self._reconnect(f"{empty} empty frames in a row")
                empty = 0

    def _reconnect(self, why: str) -> None:
        self.reconnects += 1
        self.log(f"camera {self.describe}: {why}; reconnecting")
        self.close()
        try:
            self.open()
        except CameraError as e:
            raise CameraError(f"camera {self.describe} lost ({why}) and could not be reopened: {e}") from None


def _picamera2_importable() -> bool:
    try:
        import picamera2  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or libcamera bindings failing to load
        return False
    return True


class _OpenCVReader:
    """cv2.VideoCapture, converted BGR -> RGB here: edgelite's one colour convention."""

    def __init__(self, cam: Camera, size: tuple[int, int]):
        try:
            import cv2
        except ImportError:
            raise CameraError("OpenCV is not installed: pip install 'edgelite[vision]'") from None
        self._cv2 = cv2
        src = int(cam.source) if cam.source.isdigit() else cam.source
        if cam.kind == "device" and not isinstance(src, int) and not Path(src).exists():
            raise CameraError(f"{src} does not exist (camera unplugged? see `v4l2-ctl --list-devices`)")
        self.cap = cv2.VideoCapture(src)
        if not self.cap.isOpened():
            self.cap.release()
            raise CameraError("OpenCV VideoCapture could not open it")
        if cam.kind == "device":
            # MJPG lets USB webcams deliver 640x480 at full frame rate over USB 2.
            self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a stale queue
        cam._fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def read(self):
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return False, None
        return True, self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def release(self):
        self.cap.release()


class _PiCameraReader:
    """Picamera2 (libcamera) on Raspberry Pi OS Bookworm.

    We ask for the ``RGB888`` format, the one the Picamera2 manual recommends for
    OpenCV: despite its name its bytes are ordered B, G, R (libcamera/DRM naming
    describes a little-endian word, not the byte order). So it is flipped to RGB
    here, like an OpenCV frame.
    """

    def __init__(self, index: int, size: tuple[int, int]):
        try:
            from picamera2 import Picamera2
        except Exception as e:  # noqa: BLE001
            raise CameraError(f"picamera2 is not usable ({e}); sudo apt install python3-picamera2 and create "
                              "the venv with --system-site-packages") from None
        try:
            self.cam = Picamera2(index)
            cfg = self.cam.create_preview_configuration(main={"size": tuple(size), "format": "RGB888"})
            self.cam.configure(cfg)
            self.cam.start()
        except Exception as e:  # noqa: BLE001 - picamera2 raises IndexError/RuntimeError when no camera
            raise CameraError(f"Pi camera {index} could not be started: {e} (is it connected? "
                              "try `rpicam-hello --list-cameras`)") from None

    def read(self):
        try:
            bgr = self.cam.capture_array("main")
        except Exception:  # noqa: BLE001 - counted as an empty frame; the Camera decides when to reopen
            return False, None
        return True, np.ascontiguousarray(bgr[:, :, 2::-1])  # B,G,R(,X) -> R,G,B

    def release(self):
        try:
            self.cam.stop()
        finally:
            self.cam.close()


# ------------------------------------------------------------------------------ output


class Reporter:
    """JSON lines on stdout (``--headless``) or short human lines on stderr."""

    def __init__(self, headless: bool):
        self.headless = headless
        self._last_status = 0.0

    def event(self, kind: str, human: str | None = None, **fields) -> None:
        if self.headless:
            print(json.dumps({"event": kind, **fields}, default=_json_default), flush=True)
        elif human:
            print(human, file=sys.stderr, flush=True)

    def info(self, text: str) -> None:
        """Human-only message (stderr in both modes, so stdout stays pure JSON when headless)."""
        print(text, file=sys.stderr, flush=True)

    def status_due(self, every_s: float = 1.0) -> bool:
        now = time.monotonic()
        if now - self._last_status >= every_s:
            self._last_status = now
            return True
        return False


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _printable_filename(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (surrogate-escaped by Python) become ``\\xff``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


# ------------------------------------------------------------------------------ enrolment quality


def face_quality(image: np.ndarray, face) -> dict:
    """Size, sharpness and pose of one detected face.

    * ``width``: box width in pixels.
    * ``sharpness``: variance of the Laplacian of the *aligned* 112x112 grey crop.
      Measuring on the aligned crop makes it independent of how big the face is
      in the frame; motion blur and defocus flatten the Laplacian.
    * ``roll``: angle of the eye line in degrees (0 = level).
    * ``yaw``: nose offset from the eye midpoint along the eye line, in eye
      distances (0 = frontal, growing as the head turns; the frontal faces of the
      demo video measure within ±0.16). The five landmarks are all we need: a
      frontal face has its nose between its eyes.
    """
    from edgelite.face import align_face

    lm = np.asarray(face.landmarks, np.float64)
    r_eye, l_eye, nose = lm[0], lm[1], lm[2]
    eye_vec = l_eye - r_eye
    eye_dist = float(np.hypot(*eye_vec)) or 1e-6
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    yaw = float(np.dot(nose - (r_eye + l_eye) / 2, eye_vec / eye_dist) / eye_dist)
    crop = align_face(image, face.landmarks).astype(np.float32)
    g = crop @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1])
    return {"width": face.width, "sharpness": float(lap.var()), "roll": roll, "yaw": yaw,
            "score": face.score}


def quality_problem(q: dict, args) -> str | None:
    """Why a face is not good enough to enrol, or ``None``."""
    if q["width"] < args.enroll_min_face:
        return f"face too small ({q['width']:.0f} px < {args.enroll_min_face:.0f}): come closer"
    if q["sharpness"] < args.min_sharpness:
        return f"blurred (sharpness {q['sharpness']:.0f} < {args.min_sharpness:.0f}): hold still"
    if abs(q["roll"]) > args.max_roll:
        return f"head tilted ({q['roll']:.0f} deg, max {args.max_roll:.0f}): keep the eyes level"
    if abs(q["yaw"]) > args.max_yaw:
        return f"head turned (yaw {q['yaw']:+.2f}, max {args.max_yaw:.2f}): look at the camera"
    return None


# ------------------------------------------------------------------------------ enrolment


def enroll_from_images(rec, gallery, name: str, images: list[str], args, rep: Reporter) -> int:
    import edgelite

    embs, sources = [], []
    for path in images:
        try:
            img = edgelite.load_image(path)
        except edgelite.EdgeliteError as e:
            rep.event("error", f"error: {e}", message=str(e))
            return EXIT_ERROR
        got = rec.embed_face(img, select="largest")
        if got is None:
            msg = f"{path}: no face found; use a photo with one clear face"
            rep.event("error", f"error: {msg}", message=msg)
            return EXIT_ERROR
        face, det = got.face, got.detection
        q = face_quality(img, face)
        problem = quality_problem(q, args)
        note = f" ({len(det)} faces: using the largest)" if len(det) > 1 else ""
        warn = f"; warning: {problem}" if problem else ""
        rep.event("enroll_image", f"{path}: face {q['width']:.0f} px, sharpness {q['sharpness']:.0f}, "
                  f"roll {q['roll']:+.1f} deg, yaw {q['yaw']:+.2f}{note}{warn}",
                  file=str(path), faces=len(det), **{k: _r(v, 3) for k, v in q.items()}, warning=problem)
        embs.append(got.embedding)
        sources.append(_printable_filename(Path(path).name))
    return _store(rec, gallery, name, np.stack(embs), "images: " + ", ".join(sources), rep, args)


def enroll_from_camera(rec, gallery, name: str, args, rep: Reporter) -> int:
    n, interval = args.enroll_frames, args.enroll_interval
    cam = make_camera(args, rep)
    rep.info(f"enrolling {name!r} from {cam.describe}: look at the camera; {n} sharp frontal frames, "
             f"{interval:g} s apart")
    accepted: list[np.ndarray] = []
    last_t = -math.inf
    last_reason, last_reason_t = None, 0.0
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else math.inf
    with cam:
        while len(accepted) < n:
            if time.monotonic() > deadline:
                msg = f"enrolment timed out after {args.timeout:g} s with {len(accepted)}/{n} good frames"
                rep.event("timeout", msg, captured=len(accepted), needed=n)
                return EXIT_NO_UNLOCK
            got = cam.read()
            if got is None:
                msg = f"the video ended with {len(accepted)}/{n} good frames"
                rep.event("end_of_stream", msg, captured=len(accepted), needed=n)
                return EXIT_NO_UNLOCK
            frame, t = got
            if t - last_t < interval:
                continue  # spaced in time: near-identical templates add nothing
            det = rec.detector.detect(frame)
            reason, q = None, None
            if len(det) == 0:
                reason = "no face"
            elif len(det) > 1:
                reason = f"{len(det)} faces: only the person enrolling may be in view"
            else:
                face = det[0]
                q = face_quality(frame, face)
                reason = quality_problem(q, args)
            emb = None
            if reason is None:
                emb = rec.embedder.embed_faces(frame, [face])[0]
                # Same person as the first capture? Stops a passer-by from being enrolled.
                if accepted and float(np.dot(accepted[0], emb)) < gallery.threshold:
                    reason = "a different face than the first capture"
            if reason is not None:
                now = time.monotonic()
                if reason != last_reason or now - last_reason_t > 2.0:  # say it, but not 30 times a second
                    rep.event("enroll_reject", f"  skipped frame {cam.frames - 1}: {reason}",
                              frame=cam.frames - 1, reason=reason)
                    last_reason, last_reason_t = reason, now
                continue
            accepted.append(emb)
            last_t = t
            rep.event("enroll_capture", f"  captured {len(accepted)}/{n}: face {q['width']:.0f} px, sharpness "
                      f"{q['sharpness']:.0f}, roll {q['roll']:+.1f} deg, yaw {q['yaw']:+.2f}",
                      frame=cam.frames - 1, index=len(accepted), needed=n, **{k: _r(v, 3) for k, v in q.items()})
    return _store(rec, gallery, name, np.stack(accepted), f"camera {cam.source}", rep, args)


def _store(rec, gallery, name: str, embs: np.ndarray, source: str, rep: Reporter, args) -> int:
    model_id = rec.embedder.model_id
    if len(gallery):
        best = gallery.identify(embs, model_id=model_id)
        others = {m[0].name for m in best if m[0].is_known and m[0].name != name}
        if others:
            rep.info(f"warning: these frames also match {', '.join(sorted(others))} already in the gallery")
    # One transaction: a failure cannot leave the person with no templates.
    gallery.enroll(name, embs, model_id=model_id, source=source[:4000], replace=bool(args.replace))
    total = len(gallery.embeddings(name))
    rep.event("enrolled", f"enrolled {name!r}: {len(embs)} template(s) added, {total} in total; gallery "
              f"{gallery.path} ({len(gallery)} people)", name=name, added=len(embs), templates=total,
              db=gallery.path, model_id=model_id)
    return EXIT_UNLOCKED


# ------------------------------------------------------------------------------ unlock


class Display:
    """An OpenCV window with boxes and names; disabled with a reason when unavailable."""

    def __init__(self, enabled: bool, rep: Reporter):
        self.ok = False
        if not enabled:
            return
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            rep.info("--display: no DISPLAY/WAYLAND_DISPLAY (SSH session? service?); continuing without a window")
            return
        try:
            import cv2
            cv2.namedWindow("edgelite face unlock", cv2.WINDOW_AUTOSIZE)
        except ImportError:
            rep.info("--display needs OpenCV: pip install opencv-python; continuing without a window")
            return
        except Exception as e:  # noqa: BLE001 - cv2.error: built without GUI (opencv-python-headless)
            why = str(getattr(e, "err", "") or e).split(".")[0].strip()  # cv2.error keeps the reason in .err
            rep.info(f"--display: this OpenCV build has no GUI ({why}); pip install opencv-python "
                     "(not -headless) for a window; continuing without one")
            return
        self.ok = True

    def show(self, rgb: np.ndarray, res, fps: float, streaks: dict, k: int) -> bool:
        """Draw and show; returns False when the user pressed q or Esc."""
        if not self.ok:
            return True
        import cv2

        img = np.ascontiguousarray(rgb[:, :, ::-1])  # RGB -> BGR for OpenCV drawing/display
        for f in res.faces:
            x0, y0, x1, y1 = (int(round(v)) for v in f.face.box)
            color = (0, 200, 0) if f.is_known else (0, 0, 230)
            cv2.rectangle(img, (x0, y0), (x1, y1), color, 2)
            label = f"{f.name or 'unknown'} {f.score:.2f}"
            if f.is_known:
                label += f" {min(streaks.get(f.name, 0), k)}/{k}"
            cv2.putText(img, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
        cv2.putText(img, f"{fps:.1f} fps  detect {res.timings['detect']:.1f} ms  embed {res.timings['embed']:.1f} ms",
                    (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow("edgelite face unlock", img)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self):
        if self.ok:
            import cv2
            cv2.destroyAllWindows()


def parse_on_unlock(cmd: str) -> list[str]:
    """Split --on-unlock like a shell would (never run through one) and find its program.

    Raises:
        ValueError: a bad quote, an empty command, or a program that is not found /
            not executable (the message says which).
    """
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise ValueError(f"--on-unlock {cmd!r} cannot be parsed: {e}") from None
    if not argv:
        raise ValueError("--on-unlock is empty")
    prog = argv[0]
    if os.sep in prog or (os.altsep and os.altsep in prog):
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            raise ValueError(f"--on-unlock program {prog!r} does not exist or is not executable")
    elif shutil.which(prog) is None:
        raise ValueError(f"--on-unlock program {prog!r} is not found on PATH")
    return argv


def _kill_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM the hook's process group, then SIGKILL what is left after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # the leader is gone; children may still hold the group: kill them too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue


def run_on_unlock(cmd: str | list[str], name: str, score: float, rep: Reporter, timeout: float) -> int | None:
    """Run the --on-unlock command without a shell; the name travels in the environment only.

    The command gets its own session (process group); on timeout the whole group
    is killed, so a hook that started children leaves nothing running.

    Returns:
        The exit code, or ``None`` when it could not run or timed out. Anything
        but 0 is a failure the caller reports with :data:`EXIT_HOOK_FAILED`.
    """
    argv = parse_on_unlock(cmd) if isinstance(cmd, str) else list(cmd)
    env = dict(os.environ, **{ENV_NAME: name, ENV_SCORE: f"{score:.4f}"})
    try:
        # Headless stdout is a JSON-lines stream: the command's own output goes to stderr.
        proc = subprocess.Popen(argv, env=env, stdout=sys.stderr if rep.headless else None,
                                start_new_session=True)
    except (FileNotFoundError, PermissionError, OSError) as e:
        rep.event("on_unlock", f"--on-unlock: cannot run {argv[0]}: {e.strerror or e}", returncode=None,
                  error=f"cannot run {argv[0]}: {e.strerror or e}")
        return None
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        rep.event("on_unlock", f"--on-unlock: killed after {timeout:g} s (with its process group)",
                  returncode=None, error="timeout")
        return None
    except BaseException:
        _kill_group(proc, grace=0.5)
        raise
    rep.event("on_unlock", f"--on-unlock exited with {rc}", returncode=rc,
              **({"error": f"exit code {rc}"} if rc != 0 else {}))
    return rc


def unlock_loop(rec, gallery, args, rep: Reporter) -> int:
    k = args.consecutive
    cam = make_camera(args, rep)
    display = Display(args.display, rep)
    streaks: dict[str, int] = {}
    best: dict[str, float] = {}
    times = collections.deque(maxlen=30)  # completion times of the last frames: fps over ~2 s
    start = time.monotonic()
    deadline = start + args.timeout if args.timeout > 0 else math.inf
    cooldown_until = 0.0
    warmed = False
    hook_failed = False
    liveness = None
    if args.liveness:
        from edgelite.face import FaceLivenessChecker
        liveness = FaceLivenessChecker.from_zoo(threshold=args.liveness_threshold, num_threads=args.threads)

    def liveness_of(res) -> dict[int, tuple[bool, float]]:
        """Fresh known faces of this frame -> (is_real, real score)."""
        idx = [j for j, f in enumerate(res.faces) if f.is_known and not f.reused]
        if not idx:
            return {}
        out = liveness.check(frame, [res.faces[j].face for j in idx])
        return {j: (r.is_real, r.score) for j, r in zip(idx, out)}

    try:
        with cam:
            rep.event("start", f"watching {cam.describe}: {len(gallery)} people enrolled, threshold "
                      f"{args.threshold if args.threshold is not None else gallery.threshold:.3f}, unlock after {k} "
                      f"consecutive frames" + (f", timeout {args.timeout:g} s" if args.timeout > 0 else ""),
                      source=cam.source, camera=cam.kind, people=len(gallery),
                      threshold=args.threshold if args.threshold is not None else gallery.threshold,
                      consecutive=k, precision=args.precision, model_id=rec.embedder.model_id)
            while True:
                if time.monotonic() > deadline:
                    rep.event("timeout", f"no unlock within {args.timeout:g} s", frames=cam.frames,
                              elapsed_s=_r(time.monotonic() - start))
                    return EXIT_HOOK_FAILED if hook_failed else EXIT_NO_UNLOCK
                t0 = time.perf_counter()
                got = cam.read()
                if got is None:
                    rep.event("end_of_stream", f"end of {cam.source} after {cam.frames} frames without unlock",
                              frames=cam.frames, elapsed_s=_r(time.monotonic() - start))
                    return EXIT_HOOK_FAILED if hook_failed else EXIT_NO_UNLOCK
                frame, _ = got
                t_cap = (time.perf_counter() - t0) * 1e3
                if not warmed:
                    # Pay XNNPACK's weight packing before timing anything (first call is slow).
                    rec.detector.model(rec.detector.choose_size(frame.shape[:2])).warmup(1)
                    rec.embedder.model.warmup(1)
                    warmed = True
                res = rec.recognize(frame)
                now = time.perf_counter()
                times.append(now)
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
                idx = cam.frames - 1

                # K frames per name, each a *fresh* match of that frame's own embedding
                # (and judged real with --liveness). A name carried over by the tracker
                # (reused) neither counts nor resets; a frame where the name is not
                # freshly matched resets its count.
                seen: dict[str, float] = {}
                carried: set[str] = set()
                live_scores = liveness_of(res) if liveness is not None else {}
                for j, f in enumerate(res.faces):
                    if not f.is_known:
                        continue
                    if f.reused:
                        carried.add(f.name)
                        continue
                    if liveness is not None and not live_scores.get(j, (False, 0.0))[0]:
                        continue  # judged a spoof (or unknown): does not count
                    seen[f.name] = max(seen.get(f.name, -1.0), f.score)
                for name in list(streaks):
                    if name not in seen and name not in carried:
                        del streaks[name]
                        best.pop(name, None)
                for name, s in seen.items():
                    streaks[name] = streaks.get(name, 0) + 1
                    best[name] = max(best.get(name, -1.0), s)

                timings = {"capture": t_cap, **res.timings}
                if idx % args.log_every == 0:
                    rep.event("frame", None, frame=idx, t=_r(time.monotonic() - start, 3), fps=_r(fps, 1),
                              faces=[{"name": f.name, "score": _r(f.score, 3), "track": f.track_id,
                                      "reused": f.reused, "box": [_r(v, 1) for v in f.face.box],
                                      **({"live": _r(live_scores[j][1], 3)} if j in live_scores else {})}
                                     for j, f in enumerate(res.faces)],
                              streaks=dict(streaks), timings_ms={a: _r(b) for a, b in timings.items()})
                if not rep.headless and rep.status_due():
                    who = ", ".join(f"{f.name or 'unknown'} {f.score:.2f}" for f in res.faces) or "no face"
                    rep.info(f"frame {idx:5d}  {fps:5.1f} fps  capture {t_cap:5.1f}  detect "
                             f"{res.timings['detect']:5.1f}  align {res.timings['align']:4.1f}  embed "
                             f"{res.timings['embed']:5.1f}  match {res.timings['match']:4.2f} ms | {who}")
                if not display.show(frame, res, fps, streaks, k):
                    rep.event("quit", "quit from the window", frames=cam.frames)
                    return EXIT_NO_UNLOCK

                ready = [n for n, c in streaks.items() if c >= k]
                if ready and time.monotonic() >= cooldown_until:
                    name = max(ready, key=lambda n: seen[n])
                    score = seen[name]
                    rep.event("unlocked", f"UNLOCKED: {name} (score {score:.3f}, {k} consecutive frames, "
                              f"frame {idx}, {time.monotonic() - start:.1f} s)", name=name, score=_r(score, 4),
                              best_score=_r(best[name], 4), frame=idx, consecutive=k,
                              elapsed_s=_r(time.monotonic() - start))
                    if args.on_unlock:
                        rc = run_on_unlock(args.on_unlock_argv, name, score, rep, args.on_unlock_timeout)
                        if rc != 0:
                            hook_failed = True
                    if not args.keep_running:
                        return EXIT_HOOK_FAILED if hook_failed else EXIT_UNLOCKED
                    streaks.clear()
                    best.clear()
                    cooldown_until = time.monotonic() + args.cooldown
                    if args.timeout > 0:
                        deadline = time.monotonic() + args.timeout
    finally:
        display.close()


def make_camera(args, rep: Reporter) -> Camera:
    return Camera(args.camera, backend=args.camera_backend, size=tuple(args.size), retries=args.retries,
                  retry_delay=args.retry_delay, max_empty=args.max_empty, log=rep.info)


# ------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = ap.add_argument_group("camera")
    src.add_argument("--camera", default="0", help="camera index, /dev/video*, video file or stream URL")
    src.add_argument("--camera-backend", default="auto", choices=["auto", "picamera2", "opencv"],
                     help="auto: picamera2 for an index when importable, else OpenCV")
    src.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"),
                     help="requested capture size (live cameras)")
    src.add_argument("--retries", type=int, default=5, help="reopen attempts when a live camera fails")
    src.add_argument("--retry-delay", type=float, default=0.5, help="first backoff delay (s), doubled per attempt")
    src.add_argument("--max-empty", type=int, default=30, help="consecutive empty frames treated as a disconnect")

    g = ap.add_argument_group("gallery and models")
    g.add_argument("--db", default=str(default_db()), help="SQLite gallery file")
    g.add_argument("--threshold", type=float, default=None,
                   help="cosine threshold for a match; None = the gallery's (edgelite.face.DEFAULT_THRESHOLD)")
    g.add_argument("--precision", default="int8", choices=["int8", "float32"], help="zoo model precision")
    g.add_argument("--threads", type=int, default=None, help="interpreter threads; None = min(cores, 4)")
    g.add_argument("--list", action="store_true", help="list the enrolled people and exit")

    e = ap.add_argument_group("enrolment")
    e.add_argument("--enroll", metavar="NAME", help="enrol NAME (from --images, else from the camera) and exit")
    e.add_argument("--images", nargs="+", metavar="IMG", help="enrol from these photos instead of the camera")
    e.add_argument("--replace", action="store_true", help="replace NAME's templates instead of adding to them")
    e.add_argument("--enroll-frames", type=int, default=5, help="good camera frames to capture")
    e.add_argument("--enroll-interval", type=float, default=0.7, help="seconds between captured frames")
    e.add_argument("--enroll-min-face", type=float, default=100.0, help="minimum face width (px) to enrol")
    e.add_argument("--min-sharpness", type=float, default=60.0,
                   help="minimum Laplacian variance of the aligned 112x112 face")
    e.add_argument("--max-roll", type=float, default=15.0, help="maximum eye-line tilt (degrees)")
    e.add_argument("--max-yaw", type=float, default=0.2, help="maximum nose offset from the eye midpoint "
                   "(fraction of the eye distance)")

    u = ap.add_argument_group("unlock")
    u.add_argument("--consecutive", type=int, default=5, help="frames in a row a known face must be seen (K)")
    u.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (exit 1); 0 = never")
    u.add_argument("--min-face", type=float, default=80.0, help="ignore faces narrower than this (px)")
    u.add_argument("--reembed-every", type=int, default=0,
                   help="frames in a row a tracked face may reuse its embedding; 0 = embed every frame. Reused "
                        "frames never count towards an unlock, so N > 0 needs more frames")
    u.add_argument("--on-unlock", metavar="CMD", help=f"command to run on unlock; the name is in ${ENV_NAME}")
    u.add_argument("--on-unlock-timeout", type=float, default=30.0, help="seconds before the command is killed")
    u.add_argument("--liveness", action="store_true",
                   help="require the passive anti-spoofing model to judge each counted frame 'real' (a deterrent "
                        "against photos and screens, not a guarantee; see docs/face.md)")
    u.add_argument("--liveness-threshold", type=float, default=None,
                   help="liveness 'real' probability threshold; None = the model's default")
    u.add_argument("--keep-running", action="store_true", help="keep watching after an unlock (service mode)")
    u.add_argument("--cooldown", type=float, default=5.0, help="with --keep-running: seconds between unlocks")

    o = ap.add_argument_group("output")
    mx = o.add_mutually_exclusive_group()
    mx.add_argument("--headless", action="store_true", help="JSON lines on stdout, no window")
    mx.add_argument("--display", action="store_true", help="show the camera with boxes and names (needs a display)")
    o.add_argument("--log-every", type=int, default=1, help="with --headless: a frame line every N frames")
    return ap


def _check_args(ap, args) -> None:
    for name in ("consecutive", "log_every", "enroll_frames"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.reembed_every < 0:
        ap.error("--reembed-every must be >= 0")
    if args.on_unlock_timeout <= 0:
        ap.error("--on-unlock-timeout must be > 0")
    args.on_unlock_argv = None
    if args.on_unlock is not None:
        try:
            args.on_unlock_argv = parse_on_unlock(args.on_unlock)
        except ValueError as e:
            ap.error(str(e))
    if args.retries < 0 or args.retry_delay < 0 or args.max_empty < 1:
        ap.error("--retries and --retry-delay must be >= 0, --max-empty >= 1")
    if args.images and not args.enroll:
        ap.error("--images needs --enroll NAME")


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    rep = Reporter(args.headless)

    import edgelite
    from edgelite.face import FaceGallery, FaceRecognizer, FaceRecognizerOptions

    try:
        db = Path(args.db).expanduser()
        if not args.list and not args.images:
            make_camera(args, rep).check_source()
        if args.list:
            if not db.is_file():
                rep.info(f"{db}: no gallery yet (enrol someone with --enroll NAME)")
                return EXIT_UNLOCKED
            with FaceGallery(db, create=False) as gallery:
                for p in gallery.people():
                    print(f"{p.name}\t{p.templates} template(s)\tsince {p.created}")
            return EXIT_UNLOCKED
        if not args.enroll and not db.is_file():
            raise edgelite.GalleryError(f"gallery {db} does not exist; enrol someone first: "
                                        f"python {Path(__file__).name} --enroll NAME [--images PHOTO ...] --db {db}")
        # FaceGallery creates a missing folder 0700 and the file 0600 (templates are personal data).
        gallery = FaceGallery(db, threshold=args.threshold)
        opts = FaceRecognizerOptions(precision=args.precision, threshold=args.threshold, video=True,
                                     reembed_every=args.reembed_every, min_face=args.min_face,
                                     num_threads=args.threads)
        with FaceRecognizer(gallery, opts) as rec:
            # Load the embedder now: a missing model or a gallery enrolled with another
            # model is a clear error before the camera starts, not on the first face.
            model_id = rec.embedder.model_id
            if gallery.model_id is not None and gallery.model_id != model_id:
                raise edgelite.ModelMismatchError(
                    f"gallery {db} was enrolled with {gallery.model_id} but this run uses {model_id}; "
                    f"use the same --precision as at enrolment, or re-enrol into a new --db")
            if args.enroll:
                if args.images:
                    return enroll_from_images(rec, gallery, args.enroll, args.images, args, rep)
                return enroll_from_camera(rec, gallery, args.enroll, args, rep)
            if len(gallery) == 0:
                raise edgelite.GalleryError(f"nobody is enrolled in {db}; enrol first with --enroll NAME")
            return unlock_loop(rec, gallery, args, rep)
    except KeyboardInterrupt:
        rep.event("interrupted", "interrupted")
        return EXIT_INTERRUPTED
    except (CameraError, edgelite.EdgeliteError) as e:
        rep.event("error", None, message=str(e), type=type(e).__name__)
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
