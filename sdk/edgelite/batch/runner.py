"""The per-worker part of a batch run, shared by the local and the Ray engine.

A :class:`TaskRunner` holds one worker's models (loaded lazily, on the first
input, inside the worker: an interpreter is never created in one process and
used in another) and turns decoded inputs into rows. Both engines call the same
:meth:`TaskRunner.process`, which is why they write the same rows.

Batching: faces of consecutive images are pooled into embedder calls of up to
``batch_size`` crops, so photos with one face each still fill a batch. Whether a
batch runs as one interpreter call or as a loop over batch-1 calls is
:class:`edgelite.Model`'s business (a fixed batch-1 model loops); rows do not
depend on it.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import EdgeliteError, ImageError, ImageNotFoundError, ImageTooLargeError, InputError
from .inputs import UnreadableError, decode_npy, read_bytes
from .options import BatchError, BatchOptions, Task


def model_identity(path: str | os.PathLike) -> dict:
    """``{"path", "sha256", "id"}`` of a model file; ``id`` is ``name:sha256[:16]``."""
    from ..zoo import sha256_file

    sha = sha256_file(path)
    name = os.path.basename(os.fspath(path))
    if name.endswith(".tflite"):
        name = name[: -len(".tflite")]
    return {"path": os.fspath(path), "sha256": sha, "id": f"{name}:{sha[:16]}"}


def classify(exc: BaseException) -> str:
    """The errors-table ``reason`` code of an exception (see :func:`errors_schema`)."""
    if isinstance(exc, (UnreadableError, ImageNotFoundError)):
        return "unreadable"
    if isinstance(exc, ImageTooLargeError):
        return "too_large"
    if isinstance(exc, ImageError):
        return "not_an_image"
    if isinstance(exc, InputError):
        return "bad_input"
    return "failed"


def _message(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    return msg if isinstance(exc, EdgeliteError) else f"{type(exc).__name__}: {msg}"


class Decoded:
    """One input after the reader stage: the payload or the exception, and the decode time."""

    __slots__ = ("path", "payload", "error", "decode_ms")

    def __init__(self, path: str, payload=None, error: BaseException | None = None, decode_ms: float = 0.0):
        self.path, self.payload, self.error, self.decode_ms = path, payload, error, decode_ms


class TaskRunner:
    """One worker's models and the row building for one task.

    Args:
        task: a :class:`Task`.
        options: the run's :class:`BatchOptions`.
        num_threads: interpreter threads (the engine decides: cores / workers).
    """

    def __init__(self, task: Task | str, options: BatchOptions, num_threads: int = 1):
        self.task = Task(task)
        self.options = options
        self.num_threads = num_threads
        self._detector = None
        self._embedder = None
        self._gallery = None
        self._model = None
        self._ids: dict[str, str] = {}
        self._schema = None

    # -- models (lazy: built in the worker, on first use) -------------------------------------
    @property
    def detector(self):
        if self._detector is None:
            from ..face import FaceDetector, FaceDetectorOptions

            o = self.options
            self._detector = FaceDetector(FaceDetectorOptions(
                precision=o.precision, input_size=o.input_size, model_path=o.detector_model,
                score_threshold=o.score_threshold, max_faces=o.max_faces, num_threads=self.num_threads,
                cache_dir=o.cache_dir))
        return self._detector

    @property
    def embedder(self):
        if self._embedder is None:
            from ..face import FaceEmbedder, FaceEmbedderOptions

            o = self.options
            self._embedder = FaceEmbedder(FaceEmbedderOptions(
                precision=o.precision, model_path=o.embedder_model, num_threads=self.num_threads,
                cache_dir=o.cache_dir))
        return self._embedder

    @property
    def gallery(self):
        if self._gallery is None:
            from ..face import FaceGallery

            # Each worker opens its own read connection (SQLite WAL: concurrent readers).
            self._gallery = FaceGallery(self.options.gallery, create=False, threshold=self.options.threshold)
        return self._gallery

    @property
    def model(self):
        if self._model is None:
            from ..model import Model

            self._model = Model(self.options.model, num_threads=self.num_threads)
            if len(self._model.inputs) != 1:
                raise BatchError(f"the model task runs single-input models; {self.options.model} has "
                                 f"{len(self._model.inputs)} inputs")
        return self._model

    def _id_of(self, path) -> str:
        key = os.fspath(path)
        v = self._ids.get(key)
        if v is None:
            v = self._ids[key] = model_identity(key)["id"]
        return v

    def detector_path(self, image_hw) -> str:
        o = self.options
        if o.detector_model:
            return o.detector_model
        from .. import zoo

        return os.fspath(zoo.require_model(f"yunet_{self.detector.choose_size(image_hw)}", o.precision, o.cache_dir))

    @property
    def schema(self):
        if self._schema is None:
            from ._arrow import face_schema, model_schema

            if self.task == Task.MODEL:
                m = self.model
                self._schema = model_schema([(s.name, s.shape[1:]) for s in m.outputs])
            elif self.task == Task.DETECT:
                self._schema = face_schema(self.task)
            else:
                self._schema = face_schema(self.task, self.embedder.dim)
        return self._schema

    # -- reading ------------------------------------------------------------------------------
    def decode_bytes(self, path: str, data: bytes) -> Decoded:
        """Decode an input's bytes (an image, or ``.npy`` for the ``model`` task); never raises."""
        t0 = time.perf_counter()
        try:
            if self.task == Task.MODEL and path.lower().endswith(".npy"):
                payload = decode_npy(data, path)
            else:
                from ..image import load_image

                if not data:
                    raise ImageError(f"{path}: file is empty (0 bytes)")
                payload = load_image(data)
        except Exception as e:  # noqa: BLE001 - a bad file is a row in the errors table, never a crash
            return Decoded(path, error=e, decode_ms=(time.perf_counter() - t0) * 1e3)
        return Decoded(path, payload, decode_ms=(time.perf_counter() - t0) * 1e3)

    def decode_path(self, path: str) -> Decoded:
        """Read and decode one input; never raises."""
        t0 = time.perf_counter()
        try:
            data = read_bytes(path, self.options.max_file_bytes)
        except Exception as e:  # noqa: BLE001
            return Decoded(path, error=e, decode_ms=(time.perf_counter() - t0) * 1e3)
        d = self.decode_bytes(path, data)
        d.decode_ms = (time.perf_counter() - t0) * 1e3
        return d

    # -- processing ----------------------------------------------------------------------------
    def process(self, items: Iterable[Decoded], on_input: Callable[[], None] | None = None):
        """Rows and errors for decoded inputs, in input order.

        Args:
            items: :class:`Decoded` inputs (from :meth:`decode_path`, :meth:`decode_bytes`
                or :func:`prefetch`).
            on_input: called once per input when it is done (progress).

        Returns:
            ``(table, errors)``: a ``pyarrow.Table`` with :attr:`schema` and a list of
            ``{"path", "reason", "message"}`` dicts.
        """
        if self.task == Task.MODEL:
            return self._process_model(items, on_input)
        return self._process_faces(items, on_input)

    def _process_faces(self, items, on_input):
        embed = self.task in (Task.EMBED, Task.IDENTIFY)
        cols: dict[str, list] = {k: [] for k in (
            "path", "face", "image_width", "image_height", "box", "landmarks", "score", "embedding", "name",
            "match_score", "model_id", "detector_id", "decode_ms", "detect_ms", "embed_ms")}
        errors: list[dict] = []
        pending: list[tuple] = []  # (decoded, result, crops, detect_ms, detector_id), waiting for the embedder
        n_crops = 0

        def flush():
            nonlocal pending, n_crops
            if not pending:
                return
            t0 = time.perf_counter()
            crops = [p[2] for p in pending]
            emb = self.embedder.embed(np.concatenate(crops)) if n_crops else np.zeros((0, 0), np.float32)
            embed_ms = (time.perf_counter() - t0) * 1e3
            names: list = [None] * len(emb)
            mscores: list = [None] * len(emb)
            if self.task == Task.IDENTIFY and len(emb):
                names, mscores = self._match(emb)
            k = 0
            for d, res, c, det_ms, det_id in pending:
                share = embed_ms * len(c) / max(1, n_crops)
                for i, f in enumerate(res.faces):
                    self._face_row(cols, d, res, i, f, det_ms, det_id)
                    cols["embedding"].append(emb[k])
                    cols["name"].append(names[k])
                    cols["match_score"].append(mscores[k])
                    cols["embed_ms"].append(share)
                    k += 1
            pending, n_crops = [], 0

        for d in items:
            if d.error is not None:
                errors.append({"path": d.path, "reason": classify(d.error), "message": _message(d.error)})
            else:
                try:
                    img = d.payload
                    t0 = time.perf_counter()
                    res = self.detector.detect(img)
                    det_ms = (time.perf_counter() - t0) * 1e3
                    det_id = self._id_of(self.detector_path(img.shape[:2]))
                    if len(res.faces) == 0:
                        errors.append({"path": d.path, "reason": "no_face",
                                       "message": f"no face above score {self.options.score_threshold} in "
                                                  f"{img.shape[1]}x{img.shape[0]} image"})
                    elif embed:
                        from ..face import align_faces

                        crops = align_faces(img, np.stack([f.landmarks for f in res.faces]))
                        pending.append((d, res, crops, det_ms, det_id))
                        n_crops += len(crops)
                        if n_crops >= self.options.batch_size:
                            flush()
                    else:
                        for i, f in enumerate(res.faces):
                            self._face_row(cols, d, res, i, f, det_ms, det_id)
                except (EdgeliteError, ValueError, OSError) as e:
                    errors.append({"path": d.path, "reason": classify(e), "message": _message(e)})
            d.payload = None  # free the decoded image early: bounded memory per worker
            if on_input is not None:
                on_input()
        flush()
        return self._face_table(cols, embed), errors

    def _face_row(self, cols, d, res, i, f, det_ms, det_id):
        h, w = res.image_hw
        cols["path"].append(d.path)
        cols["face"].append(i)
        cols["image_width"].append(w)
        cols["image_height"].append(h)
        cols["box"].append(np.asarray(f.box, np.float32))
        cols["landmarks"].append(np.asarray(f.landmarks, np.float32))
        cols["score"].append(float(f.score))
        cols["detector_id"].append(det_id)
        cols["decode_ms"].append(d.decode_ms)
        cols["detect_ms"].append(det_ms)

    def _match(self, emb):
        g = self.gallery
        if len(g) == 0:
            return [None] * len(emb), [None] * len(emb)
        res = g.identify(emb, model_id=self.embedder.model_id, top_k=1, threshold=self.options.threshold)
        names, scores = [], []
        for matches in res:
            best = matches[0] if matches else None
            names.append(best.name if best is not None and best.is_known else None)
            scores.append(float(best.score) if best is not None else None)
        return names, scores

    def _face_table(self, cols, embed):
        import pyarrow as pa

        schema = self.schema
        n = len(cols["path"])
        f32 = pa.float32()

        def fixed(values, width, inner=None):
            flat = np.asarray(values, np.float32).reshape(-1) if n else np.zeros(0, np.float32)
            arr = pa.array(flat, f32)
            if inner:
                arr = pa.FixedSizeListArray.from_arrays(arr, inner)
            return pa.FixedSizeListArray.from_arrays(arr, width)

        model_ids = cols["detector_id"] if not embed else [self.embedder.model_id] * n
        data = {
            "path": pa.array(cols["path"], pa.string()),
            "face": pa.array(cols["face"], pa.int32()),
            "image_width": pa.array(cols["image_width"], pa.int32()),
            "image_height": pa.array(cols["image_height"], pa.int32()),
            "box": fixed(cols["box"], 4),
            "landmarks": fixed(cols["landmarks"], 5, inner=2),
            "score": pa.array(np.asarray(cols["score"], np.float32), f32),
        }
        if embed:
            data["embedding"] = fixed(cols["embedding"], schema.field("embedding").type.list_size)
        if self.task == Task.IDENTIFY:
            data["name"] = pa.array(cols["name"], pa.string())
            data["match_score"] = pa.array(cols["match_score"], f32)
        data["model_id"] = pa.array(model_ids, pa.string())
        data["detector_id"] = pa.array(cols["detector_id"], pa.string())
        data["decode_ms"] = pa.array(cols["decode_ms"], f32)
        data["detect_ms"] = pa.array(cols["detect_ms"], f32)
        if embed:
            data["embed_ms"] = pa.array(cols["embed_ms"], f32)
        return pa.Table.from_arrays([data[f.name] for f in schema], schema=schema)

    def _process_model(self, items, on_input):
        import pyarrow as pa

        m = self.model
        schema = self.schema
        spec = m.inputs[0]
        example_shape = tuple(spec.shape[1:])
        pre = m.preprocessing
        rows: dict[str, list] = {"path": [], "decode_ms": [], "infer_ms": []}
        outs: dict[str, list] = {s.name: [] for s in m.outputs}
        errors: list[dict] = []
        batch: list[tuple] = []

        def flush():
            nonlocal batch
            if not batch:
                return
            t0 = time.perf_counter()
            y = m.run(np.stack([b[1] for b in batch]))
            ms = (time.perf_counter() - t0) * 1e3 / len(batch)
            for j, (d, _) in enumerate(batch):
                rows["path"].append(d.path)
                rows["decode_ms"].append(d.decode_ms)
                rows["infer_ms"].append(ms)
                for name in outs:
                    outs[name].append(np.asarray(y[name][j], np.float32).reshape(-1))
            batch = []

        for d in items:
            try:
                if d.error is not None:
                    raise d.error
                x = d.payload
                if x.ndim == 3 and x.dtype == np.uint8 and x.shape[-1] in (1, 3, 4) and pre is not None \
                        and not d.path.lower().endswith(".npy"):
                    from ..image import as_rgb

                    x = pre.apply(as_rgb(x))[0]  # the model's embedded preprocessing, as at conversion
                if x.shape == (1, *example_shape):
                    x = x[0]
                if x.shape != example_shape:
                    raise InputError(f"{d.path}: shape {x.shape} does not fit the model input "
                                     f"{list(spec.shape)} (expected {list(example_shape)} per example)"
                                     + ("" if pre is not None or d.path.lower().endswith(".npy") else
                                        "; the model has no embedded preprocessing, so images must already "
                                        "have its input size"))
                if x.dtype.kind not in "biuf":
                    raise InputError(f"{d.path}: dtype {x.dtype} is not numeric")
                batch.append((d, x))
                if len(batch) >= self.options.batch_size:
                    flush()
            except Exception as e:  # noqa: BLE001 - recorded, never stops the run
                errors.append({"path": d.path, "reason": classify(e), "message": _message(e)})
            d.payload = None
            if on_input is not None:
                on_input()
        flush()
        n = len(rows["path"])
        model_id = self._id_of(self.options.model)
        data = {"path": pa.array(rows["path"], pa.string()), "model_id": pa.array([model_id] * n, pa.string()),
                "decode_ms": pa.array(rows["decode_ms"], pa.float32()),
                "infer_ms": pa.array(rows["infer_ms"], pa.float32())}
        for name in outs:
            width = schema.field(name).type.list_size
            flat = np.concatenate(outs[name]) if n else np.zeros(0, np.float32)
            data[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)
        return pa.Table.from_arrays([data[f.name] for f in schema], schema=schema), errors

    def close(self):
        for obj in (self._detector, self._embedder, self._gallery, self._model):
            if obj is not None and hasattr(obj, "close"):
                obj.close()
        self._detector = self._embedder = self._gallery = self._model = None


_END = object()


def prefetch(paths: Iterable[str], decode: Callable[[str], Decoded], depth: int) -> Iterator[Decoded]:
    """Decode ``paths`` in a reader thread, ``depth`` items ahead of the consumer.

    OpenCV's decoders and the TFLite interpreter both release the GIL, so the next
    image decodes while this one is inferred. The queue bound keeps at most
    ``depth`` decoded images in memory.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader():
        try:
            for p in paths:
                if stop.is_set():
                    return
                q.put(decode(p))
        finally:
            q.put(_END)

    t = threading.Thread(target=reader, name="edgelite-batch-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


def input_fingerprint(paths: list[str]) -> str:
    """SHA-256 of the sorted input list (compared on resume: same list, same shards)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()
