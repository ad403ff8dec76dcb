"""What a worker process does with a batch of requests: decode, run the task
classes, encode. No HTTP and no process plumbing here, so it is testable in-process.

One :class:`Engine` per worker process. It owns the worker's interpreters (loaded
after the process started, never shared across processes) and runs a *batch* of
requests at once: every image is detected, then every face of every request is
aligned and embedded in **one** embedder call, matched against the gallery in one
matrix product, and ``model`` requests with the same input shape are stacked into
one model run. Each request still gets its own answer; one bad request never
fails its batch-mates.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeliteError, GalleryError, ImageError, InputError, ModelMismatchError, ZooError
from ..face.types import DetectionResult

#: Face ops (native routes ``/v1/faces/<op>`` and the gallery routes).
FACE_OPS = ("detect", "embed", "identify", "verify", "enroll")
NPY_MIME = "application/x-npy"
NPZ_MIME = "application/x-npz"
JSON_MIME = "application/json"


class RequestError(EdgeliteError, ValueError):
    """A request that cannot be served as sent: carries its HTTP status and a short code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclasses.dataclass
class Request:
    """One request as a worker sees it (picklable: it crosses a process boundary)."""

    id: int
    op: str                      # "model", a face op, "remove", "people"
    body: bytes = b""
    content_type: str = ""
    accept: str = JSON_MIME
    params: dict = dataclasses.field(default_factory=dict)
    model: str | None = None     # for op == "model"
    deadline: float = float("inf")  # time.time() after which nobody waits for the answer


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_MIME


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":"), allow_nan=False).encode())


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def response_for_exception(exc: BaseException) -> Response:
    """Map an exception to an HTTP answer. Messages of our typed errors are meant for
    users (they name the bad value and the fix); anything else is a 500 without
    internals."""
    if isinstance(exc, RequestError):
        return error_response(exc.status, exc.code, str(exc))
    if isinstance(exc, ModelMismatchError):
        return error_response(409, "model_mismatch", str(exc))
    if isinstance(exc, GalleryError):
        return error_response(500, "gallery_error", str(exc))
    if isinstance(exc, (ImageError, InputError)):
        return error_response(400, "bad_input", str(exc))
    if isinstance(exc, EdgeliteError):
        return error_response(500, type(exc).__name__, str(exc))
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")


# --------------------------------------------------------------------------- decoding


def media_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_npy(body: bytes, what: str = "body") -> np.ndarray:
    """An ``.npy`` request body (:func:`edgelite.fileio.load_npy_bytes`: header checked
    against the bytes present, no pickles) or a 400."""
    from ..fileio import load_npy_bytes

    try:
        return load_npy_bytes(body, what)
    except InputError as e:
        raise RequestError(400, "bad_npy", str(e)) from None


def dump_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def load_json(body: bytes) -> Any:
    """Parse a JSON body with the runtime's bounded parser (:func:`edgelite.metadata.loads_bounded`:
    nesting depth checked by a linear scan before parsing, so 50,000 ``[`` cannot
    recurse). The size is already capped by the HTTP front."""
    from ..errors import MetadataError
    from ..metadata import loads_bounded

    try:
        return loads_bounded(body, what="the JSON body", max_bytes=max(len(body), 1))
    except MetadataError as e:
        raise RequestError(400, "bad_json", str(e)) from None


def decode_image(body: bytes, content_type: str, what: str = "image") -> np.ndarray:
    """Request body → HWC uint8 RGB: ``image/*`` is decoded (size checked before
    decoding), ``application/x-npy`` must hold an ``(H, W[, C])`` uint8 array."""
    from ..image import as_rgb, load_image

    mt = media_type(content_type)
    if not body:
        raise RequestError(400, "empty_body", f"{what}: the request body is empty")
    if mt == NPY_MIME:
        arr = load_npy(body, what)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        return as_rgb(np.ascontiguousarray(arr), what=what)
    if mt.startswith("image/") or mt == "application/octet-stream":
        return load_image(body)
    raise RequestError(415, "unsupported_media_type",
                       f"{what}: content type {mt or '(none)'!r} is not supported; send image/jpeg, image/png "
                       f"or {NPY_MIME} (HWC uint8 RGB)")


# --------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """The model files one server serves (resolved once, in the parent, and sent to workers)."""

    detector: dict          # input size -> path (YuNet), may be empty
    embedder: str | None    # SFace path
    gallery: str | None     # SQLite gallery path (may not exist yet)
    models: dict            # name -> path of every .tflite, for the `model` task
    default_model: str | None
    precision: str = "int8"

    @property
    def has_faces(self) -> bool:
        return bool(self.detector) and self.embedder is not None


def resolve_model_files(model_dir: Path | None, precision: str = "int8", *, gallery: Path | None = None,
                        build_missing: bool = True) -> ModelFiles:
    """Find the models to serve.

    ``model_dir`` may be a zoo cache (with a ``models/`` folder), the ``models``
    folder itself, or a SageMaker model directory (``/opt/ml/model``). Face models
    are found by their zoo names (``yunet_320-int8.tflite``, ``yunet_640-int8.tflite``,
    ``sface-int8.tflite``); every ``*.tflite`` is also served as a plain model under
    its file stem. An optional ``serve.json`` (``{"model": "<stem>"}``) names the
    model ``/invocations`` runs for the ``model`` task.

    Without ``model_dir`` the zoo cache is used, built first if it is missing (needs
    the convert extra, like ``make demo``).
    """
    from .. import zoo

    if model_dir is None:
        d = zoo.models_dir()
        if not (d / f"sface-{precision}.tflite").is_file() or not (d / f"yunet_320-{precision}.tflite").is_file():
            if not build_missing:
                raise ZooError(f"the zoo models are not built in {d}; run `edgelite models build` (or `make demo`)")
            _build_zoo()
    else:
        d = Path(model_dir).expanduser()
        if not d.is_dir():
            raise ZooError(f"model directory {str(d)!r} does not exist or is not a directory")
        if (d / "models").is_dir() and not any(d.glob("*.tflite")):
            d = d / "models"
    models = {p.stem: str(p) for p in sorted(d.glob("*.tflite")) if p.is_file()}
    for p in models.values():  # a file that carries its SHA-256 (zoo builds do) must match it
        if zoo.sha256_sidecar(p).is_file():
            zoo.verify_model(p, name=Path(p).stem)
    detector = {s: models[f"yunet_{s}-{precision}"] for s in (320, 640) if f"yunet_{s}-{precision}" in models}
    embedder = models.get(f"sface-{precision}")
    default = None
    cfg = d / "serve.json"
    if cfg.is_file():
        try:
            default = json.loads(cfg.read_text(encoding="utf-8")).get("model")
        except (ValueError, AttributeError, OSError) as e:
            raise ZooError(f"{cfg}: not a valid JSON object ({e})") from None
        if default is not None and default not in models:
            raise ZooError(f"{cfg} names model {default!r}, which is not in {d} (have: {sorted(models)})")
    else:
        own = [k for k in models if not k.startswith(("yunet_", "sface-"))]
        default = own[0] if len(own) == 1 else (next(iter(models)) if len(models) == 1 else None)
    gal = gallery if gallery is not None else d / "gallery.db"
    return ModelFiles(detector, embedder, str(gal), models, default, precision)


def _build_zoo() -> None:
    from .. import zoo
    from ..plugins import converter_hook

    try:
        build_zoo = converter_hook("build_zoo")
    except EdgeliteError as e:
        raise ZooError(f"the zoo models are not built in {zoo.models_dir()} and this install cannot build them "
                       f"({e}); run `edgelite models build` where the convert extra is installed, or pass "
                       "--model-dir") from None
    build_zoo(progress=False)


# --------------------------------------------------------------------------- engine


def _param(params: dict, key: str, kind, default=None, lo=None, hi=None):
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        v = kind(raw)
    except (TypeError, ValueError):
        raise RequestError(400, "bad_parameter", f"parameter {key}={raw!r} is not a valid {kind.__name__}") from None
    if isinstance(v, float) and not np.isfinite(v):
        raise RequestError(400, "bad_parameter", f"parameter {key}={raw!r} must be finite")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise RequestError(400, "bad_parameter", f"parameter {key}={raw!r} must be in [{lo}, {hi}]")
    return v


class Engine:
    """The models of one worker and the code that runs a batch of requests on them.

    Args:
        files: what to serve (:func:`resolve_model_files`).
        num_threads: interpreter threads per model.
        eager: models to load now (the ones ``/invocations`` needs), so that the
            worker reports ready only when it can answer; others load on first use.
        writable_gallery: open (and create) the gallery for writes.
    """

    def __init__(self, files: ModelFiles, *, num_threads: int = 1, eager: tuple[str, ...] = ("faces",),
                 writable_gallery: bool = False):
        self.files = files
        self.num_threads = num_threads
        self.writable_gallery = writable_gallery
        self._detectors: dict = {}
        self._embedder = None
        self._gallery = None
        self._models: dict = {}
        for what in eager:
            if what == "faces":
                self._face_models()
            elif what:
                self.model(what)

    # -- model access ------------------------------------------------------------
    def _face_models(self):
        from ..face.detector import FaceDetector
        from ..face.embedder import FaceEmbedder

        if not self.files.has_faces:
            raise RequestError(404, "no_face_models",
                               "this server has no face models (yunet_320-*.tflite and sface-*.tflite in the "
                               "model directory)")
        if not self._detectors:
            for size, path in self.files.detector.items():
                d = FaceDetector.from_model(path, num_threads=self.num_threads)
                d.model(size).warmup()
                self._detectors[size] = d
            self._embedder = FaceEmbedder.from_model(self.files.embedder, num_threads=self.num_threads)
            self._embedder.model.warmup()
        return self._detectors, self._embedder

    def gallery(self, *, write: bool = False):
        from ..face.gallery import FaceGallery

        if self._gallery is None:
            path = self.files.gallery
            exists = path is not None and os.path.isfile(path)
            if not exists and not (write and self.writable_gallery and path):
                raise RequestError(404, "no_gallery",
                                   "no gallery is configured (gallery.db in the model directory, or --gallery); "
                                   "enrol people first (POST /v1/gallery/people/<name>, needs the token)")
            self._gallery = FaceGallery(path, create=self.writable_gallery)
        return self._gallery

    def model(self, name: str | None):
        from ..model import Model

        if name is None:
            raise RequestError(404, "no_model", "no default model: put one .tflite in the model directory, or name "
                                                "it in serve.json ({\"model\": \"<name>\"}), or use "
                                                "/v1/models/<name>/predict")
        m = self._models.get(name)
        if m is None:
            path = self.files.models.get(name)
            if path is None:
                raise RequestError(404, "unknown_model", f"no model named {name!r}; have {sorted(self.files.models)}")
            m = Model(path, num_threads=self.num_threads)
            m.warmup()
            self._models[name] = m
        return m

    def close(self):
        for d in self._detectors.values():
            d.close()
        if self._embedder is not None:
            self._embedder.close()
        if self._gallery is not None:
            self._gallery.close()
        for m in self._models.values():
            m.close()

    # -- batches -----------------------------------------------------------------
    def run_batch(self, reqs: list[Request]) -> list[Response]:
        """Answer every request of a batch, in order. Never raises."""
        out: list[Response | None] = [None] * len(reqs)
        face_idx = [i for i, r in enumerate(reqs) if r.op in FACE_OPS]
        model_idx = [i for i, r in enumerate(reqs) if r.op == "model"]
        other = [i for i, r in enumerate(reqs) if r.op not in FACE_OPS and r.op != "model"]
        for group, fn in ((face_idx, self._faces_batch), (model_idx, self._model_batch)):
            if group:
                try:
                    for i, resp in zip(group, fn([reqs[i] for i in group])):
                        out[i] = resp
                except BaseException as e:  # noqa: BLE001 - a worker must answer, not die
                    if isinstance(e, (KeyboardInterrupt, SystemExit)):
                        raise
                    for i in group:
                        if out[i] is None:
                            out[i] = response_for_exception(e)
        for i in other:
            out[i] = self._guard(self._admin, reqs[i])
        return [r if r is not None else error_response(500, "internal_error", "no answer") for r in out]

    @staticmethod
    def _guard(fn, *a) -> Response:
        try:
            return fn(*a)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001
            return response_for_exception(e)

    # -- face ops ----------------------------------------------------------------
    def _decode_face_request(self, r: Request) -> dict:
        """Decode the request's image(s); detection happens for the whole batch at once."""
        if r.op == "verify" and media_type(r.content_type) in (JSON_MIME, "multipart/form-data"):
            images = self._two_images(r)
        else:
            images = [decode_image(r.body, r.content_type)]
        return {"req": r, "raw": images,
                "min_score": _param(r.params, "min_score", float, 0.0, 0.0, 1.0),
                "max_faces": _param(r.params, "max_faces", int, None, 1, 10_000)}

    def _detect_all(self, jobs: list) -> None:
        """One detector run per input size for every image of every request of the batch."""
        from ..face.detector import AUTO_SMALL_MAX_SIDE

        dets, _ = self._face_models()
        by_size: dict[int, list] = {}
        for job in jobs:
            if isinstance(job, dict):
                for k, img in enumerate(job["raw"]):
                    size = 640 if 640 in dets and (max(img.shape[:2]) > AUTO_SMALL_MAX_SIDE or 320 not in dets) \
                        else min(dets)
                    by_size.setdefault(size, []).append((job, k))
        for size, items in by_size.items():
            results = dets[size].detect_many([job["raw"][k] for job, k in items])
            for (job, k), det in zip(items, results):
                faces = [f for f in det.faces if f.score >= job["min_score"]][:job["max_faces"]]
                job.setdefault("found", {})[k] = faces
        for job in jobs:
            if isinstance(job, dict):
                job["images"] = [(img, job["found"][k]) for k, img in enumerate(job["raw"])]

    def _two_images(self, r: Request) -> list[np.ndarray]:
        mt = media_type(r.content_type)
        if mt == "multipart/form-data":
            parts = r.params.get("_files") or {}
            try:
                return [decode_image(parts[k][1], parts[k][0], f"image {k!r}") for k in ("a", "b")]
            except KeyError:
                raise RequestError(400, "bad_input", "verify with two images needs form fields 'a' and 'b'") from None
        doc = load_json(r.body)
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("a", "b")):
            raise RequestError(400, "bad_input", "verify with two images takes JSON "
                                                 '{"a": "<base64 image>", "b": "<base64 image>"}')
        out = []
        for k in ("a", "b"):
            try:
                data = base64.b64decode(doc[k], validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, "bad_base64", f"field {k!r} is not valid base64") from None
            out.append(decode_image(data, "image/*", f"image {k!r}"))
        return out

    def _faces_batch(self, reqs: list[Request]) -> list[Response]:
        from ..face.align import align_faces

        _, embedder = self._face_models()
        jobs: list[dict | Response] = []
        for r in reqs:
            try:
                jobs.append(self._decode_face_request(r))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001
                jobs.append(response_for_exception(e))
        self._detect_all(jobs)
        crops, owners = [], []  # every face to embed, and (job, image, face) it belongs to
        for ji, job in enumerate(jobs):
            if isinstance(job, Response) or job["req"].op == "detect":
                continue
            r = job["req"]
            for k, (img, faces) in enumerate(job["images"]):
                if not faces:
                    continue
                if r.op in ("verify", "enroll"):  # one face per image: the selected one
                    try:
                        chosen = DetectionResult(tuple(faces), img.shape[:2]).select(r.params.get("select") or "largest")
                    except InputError as e:
                        jobs[ji] = response_for_exception(e)
                        break
                    sel = [faces.index(chosen)]
                else:
                    sel = list(range(len(faces)))
                lms = np.stack([faces[j].landmarks for j in sel])
                crops.append(align_faces(img, lms))
                owners.extend((ji, k, j) for j in sel)
        emb = embedder.embed(np.concatenate(crops)) if crops else np.zeros((0, 128), np.float32)
        per_job: dict = {}
        for row, (ji, k, j) in enumerate(owners):
            per_job.setdefault(ji, {})[(k, j)] = emb[row]
        ident = self._identify_all(jobs, per_job)
        out = []
        for ji, job in enumerate(jobs):
            if isinstance(job, Response):
                out.append(job)
                continue
            out.append(self._guard(self._face_answer, job, per_job.get(ji, {}), ident.get(ji, {})))
        return out

    def _identify_all(self, jobs, per_job) -> dict:
        """One gallery query for every face of every identify request in the batch."""
        keys, vecs = [], []
        for ji, job in enumerate(jobs):
            if isinstance(job, Response) or job["req"].op != "identify":
                continue
            for key, v in per_job.get(ji, {}).items():
                keys.append((ji, key))
                vecs.append(v)
        if not vecs:
            return {}
        try:
            gal = self.gallery()
            top_k = max(_param(j["req"].params, "top_k", int, 1, 1, 100) for j in jobs
                        if not isinstance(j, Response) and j["req"].op == "identify")
        except RequestError as e:
            for ji in {k[0] for k in keys}:
                jobs[ji] = response_for_exception(e)
            return {}
        res = gal.identify(np.stack(vecs), model_id=self._embedder.model_id, top_k=top_k, threshold=-1.0)
        out: dict = {}
        for (ji, key), matches in zip(keys, res):
            out.setdefault(ji, {})[key] = matches
        return out

    def _face_answer(self, job: dict, embs: dict, ident: dict) -> Response:
        r: Request = job["req"]
        p = r.params
        if r.op in ("verify", "enroll"):
            for k, (_, faces) in enumerate(job["images"]):
                if not faces:
                    which = "" if len(job["images"]) == 1 else f" {'ab'[k]!r}"
                    raise RequestError(422, "no_face", f"no face found in image{which}")
            if r.op == "enroll":
                return self._enroll(r, next(iter(embs.values())))
            return self._verify(r, job, embs)
        img, faces = job["images"][0]
        thr = None
        if r.op == "identify":
            thr = _param(p, "threshold", float, None, -1.0, 1.0)
            if thr is None:
                thr = self.gallery().threshold
            top_k = _param(p, "top_k", int, 1, 1, 100)
        items = []
        for j, f in enumerate(faces):
            d = f.to_dict()
            if r.op in ("embed", "identify"):
                d["embedding"] = [float(v) for v in embs[(0, j)]]
            if r.op == "identify":
                matches = [m for m in ident.get((0, j), []) if m.name is not None]
                best = matches[0] if matches else None
                d["name"] = best.name if best is not None and best.score >= thr else None
                d["similarity"] = float(best.score) if best is not None else None
                d["candidates"] = [{"name": m.name, "similarity": float(m.score)}
                                   for m in matches[:top_k] if m.score >= thr]
                del d["embedding"]  # templates are personal data: identify answers with names only
            items.append(d)
        doc: dict = {"image_hw": list(img.shape[:2]), "faces": items}
        if r.op in ("embed", "identify"):
            doc["model_id"] = self._embedder.model_id
        if r.op == "identify":
            doc["threshold"] = thr
        return json_response(doc)

    def _verify(self, r: Request, job: dict, embs: dict) -> Response:
        thr = _param(r.params, "threshold", float, None, -1.0, 1.0)
        vecs = [v for _, v in sorted(embs.items())]
        if len(job["images"]) == 2:
            if thr is None:
                from ..face.gallery import DEFAULT_THRESHOLD
                thr = self._gallery.threshold if self._gallery is not None else DEFAULT_THRESHOLD
            score = float(np.dot(vecs[0], vecs[1]))
            faces = [job["images"][k][1][j].to_dict() for (k, j) in sorted(embs)]
            return json_response({"score": score, "accepted": score >= thr, "threshold": thr,
                                  "faces": faces})
        name = r.params.get("name")
        if not name:
            raise RequestError(400, "bad_input", "verify needs ?name=<enrolled name> with one image, or two images "
                                                 '(JSON {"a": base64, "b": base64} or multipart fields a and b)')
        gal = self.gallery()
        if name not in gal:
            raise RequestError(404, "unknown_person", "no such person in the gallery")
        res = gal.verify(vecs[0], name, model_id=self._embedder.model_id, threshold=thr)
        (k, j), = embs.keys()
        return json_response({**res.to_dict(), "face": job["images"][k][1][j].to_dict()})

    def _enroll(self, r: Request, vec: np.ndarray) -> Response:
        from ..face.gallery import validate_name

        name = validate_name(r.params.get("name"))
        gal = self.gallery(write=True)
        replace = str(r.params.get("replace", "")).lower() in ("1", "true", "yes")
        if replace and name in gal:
            gal.remove(name)
        ids = gal.enroll(name, vec, model_id=self._embedder.model_id, source="edgelite-serve")
        people = {p.name: p.templates for p in gal.people()}
        return json_response({"name": name, "enrolled": len(ids), "templates": people.get(name, len(ids))}, 201)

    def _admin(self, r: Request) -> Response:
        from ..face.gallery import validate_name

        if r.op == "remove":
            gal = self.gallery(write=True)
            name = validate_name(r.params.get("name"))
            if name not in gal:
                raise RequestError(404, "unknown_person", "no such person in the gallery")
            n = gal.remove(name)
            return json_response({"name": name, "removed_templates": n})
        if r.op == "people":
            gal = self.gallery()
            return json_response({"people": [{"name": p.name, "templates": p.templates} for p in gal.people()]})
        if r.op == "models":
            return json_response({"models": {k: self._describe(k) for k in self.files.models},
                                  "default": self.files.default_model})
        raise RequestError(404, "unknown_op", f"unknown operation {r.op!r}")

    def _describe(self, name: str) -> dict:
        m = self.model(name)
        return {"inputs": [s.to_dict() for s in m.inputs], "outputs": [s.to_dict() for s in m.outputs]}

    # -- plain models ------------------------------------------------------------
    def _model_inputs(self, r: Request, m) -> list[np.ndarray]:
        mt = media_type(r.content_type)
        specs = m.inputs
        if mt == NPY_MIME:
            arrays = [load_npy(r.body)]
        elif mt == NPZ_MIME:
            arrays = self._npz(r.body, [s.name for s in specs])
        elif mt == JSON_MIME:
            doc = load_json(r.body)
            if isinstance(doc, dict):
                doc = doc.get("inputs", doc.get("instances"))
            if isinstance(doc, dict):
                missing = [s.name for s in specs if s.name not in doc]
                if missing:
                    raise RequestError(400, "bad_input", f"missing inputs {missing}; the model's inputs are "
                                                         f"{[s.name for s in specs]}")
                doc = [doc[s.name] for s in specs]
            elif len(specs) == 1:
                doc = [doc]
            if not isinstance(doc, list) or len(doc) != len(specs):
                raise RequestError(400, "bad_input", 'JSON input must be {"inputs": <array>} (one input) or '
                                                     '{"inputs": {"<name>": <array>, ...}}')
            arrays = []
            for s, v in zip(specs, doc):
                try:
                    a = np.asarray(v, dtype=np.float64 if np.dtype(s.dtype).kind == "f" or s.quantized
                                   else np.dtype(s.dtype))
                except (ValueError, TypeError, OverflowError) as e:
                    raise RequestError(400, "bad_input", f"input {s.name!r} is not a numeric array: {e}") from None
                arrays.append(a.astype(np.float32) if a.dtype == np.float64 else a)
        elif mt.startswith("image/"):
            spec = m.preprocessing
            if spec is None or len(specs) != 1:
                raise RequestError(415, "unsupported_media_type",
                                   "this model has no embedded preprocessing, so it cannot take an image; "
                                   f"send {NPY_MIME} or JSON arrays")
            arrays = [m.prepare(decode_image(r.body, r.content_type))[0]]  # the model's own input path
        else:
            raise RequestError(415, "unsupported_media_type",
                               f"content type {mt or '(none)'!r} is not supported for models; send {NPY_MIME}, "
                               f"{NPZ_MIME} (several inputs), {JSON_MIME} or an image (if the model embeds "
                               "its preprocessing)")
        out = []
        for s, a in zip(specs, arrays):
            want = tuple(s.shape)
            if a.ndim == len(want) - 1:
                a = a[None]
            if a.ndim != len(want) or tuple(a.shape[1:]) != want[1:] or a.shape[0] < 1:
                raise RequestError(400, "bad_shape", f"input {s.name!r}: shape {list(a.shape)} does not fit "
                                                     f"the model's {list(s.shape_signature)} (batch first)")
            if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
                raise RequestError(400, "bad_input", f"input {s.name!r} contains NaN or inf")
            out.append(a)
        return out

    @staticmethod
    def _npz(body: bytes, names: list[str]) -> list[np.ndarray]:
        import zipfile

        try:
            zf = zipfile.ZipFile(io.BytesIO(body))
            members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            if set(members) != set(names):
                raise RequestError(400, "bad_input", f"npz members {sorted(members)} must be the inputs {names}")
            arrays = []
            for n in names:
                info = zf.getinfo(members[n])
                if info.file_size > 256 * 1024 * 1024:
                    raise RequestError(413, "payload_too_large", f"npz member {n!r} is too large")
                arrays.append(load_npy(zf.read(info), f"npz member {n!r}"))
            return arrays
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
            raise RequestError(400, "bad_npz", f"body is not a valid .npz: {e}") from None

    def _model_batch(self, reqs: list[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(reqs)
        groups: dict = {}
        for i, r in enumerate(reqs):
            try:
                m = self.model(r.model)
                arrays = self._model_inputs(r, m)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001
                out[i] = response_for_exception(e)
                continue
            key = (r.model, tuple((a.shape[1:], a.dtype.str) for a in arrays))
            groups.setdefault(key, []).append((i, arrays))
        for (name, _), items in groups.items():
            m = self.model(name)
            try:
                stacked = [np.concatenate([a[k] for _, a in items]) for k in range(len(m.inputs))]
                res = m.run(stacked)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001
                for i, _ in items:
                    out[i] = response_for_exception(e)
                continue
            start = 0
            for i, arrays in items:
                n = arrays[0].shape[0]
                part = {k: v[start:start + n] for k, v in res.items()}
                start += n
                out[i] = self._guard(self._encode_outputs, reqs[i], part)
        return [o if o is not None else error_response(500, "internal_error", "no answer") for o in out]

    @staticmethod
    def _encode_outputs(r: Request, outputs: dict) -> Response:
        accept = media_type(r.accept)
        if accept in (NPY_MIME, NPZ_MIME):
            if len(outputs) == 1 and accept == NPY_MIME:
                return Response(200, dump_npy(next(iter(outputs.values()))), NPY_MIME)
            buf = io.BytesIO()
            np.savez(buf, **outputs)
            return Response(200, buf.getvalue(), NPZ_MIME)
        return json_response({"outputs": {k: np.asarray(v, np.float64).tolist() if v.dtype.kind == "f"
                                          else v.tolist() for k, v in outputs.items()}})
