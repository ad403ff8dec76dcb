"""The HTTP layer: a Starlette app served by Uvicorn in one process, in front of
the worker processes (:mod:`edgelite.serve.workers`).

Routes:

====================================  =======================================================
``GET  /ping``                        200 (empty) once every worker has its models, else 503
``POST /invocations``                 the configured task (SageMaker's contract)
``GET  /metrics``                     Prometheus metrics
``POST /v1/faces/{op}``               ``detect``, ``embed``, ``identify``, ``verify``
``GET  /v1/models``                   the plain models and their tensors
``POST /v1/models/{name}/predict``    run one plain model
``GET  /v1/gallery/people``           enrolled names (bearer token)
``POST /v1/gallery/people/{name}``    enrol the largest face of the image (bearer token)
``DELETE /v1/gallery/people/{name}``  remove a person (bearer token)
====================================  =======================================================

Errors are JSON ``{"error": {"code", "message"}}`` with 400 (bad input), 401/403
(token), 404, 405, 406, 413 (body over the limit, refused before it is read),
415 (content type), 422 (no face where one is needed), 503 + ``Retry-After``
(queue full, or not ready), 504 (request deadline), 500 (a worker died while
running the request). Bodies, embeddings and names are never logged: the access
log has the method, the route *template*, the status and the latency.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import Response as HTTPResponse
from starlette.routing import Route

from .config import FACE_TASKS, ServeConfig, Task
from .engine import (JSON_MIME, NPY_MIME, NPZ_MIME, Request, Response, error_response, json_response,
                     media_type, resolve_model_files)
from .metrics import Metrics
from .workers import Overloaded, WorkerPool, WorkerSpec

log = logging.getLogger("edgelite.serve")

IMAGE_TYPES = ("image/", NPY_MIME, "application/octet-stream")
MODEL_TYPES = (NPY_MIME, NPZ_MIME, JSON_MIME, "image/")
RETRY_AFTER_S = "1"


class _Reject(Exception):
    def __init__(self, response: Response, headers: dict | None = None):
        self.response = response
        self.headers = headers or {}


def _to_http(resp: Response, headers: dict | None = None) -> HTTPResponse:
    return HTTPResponse(resp.body, status_code=resp.status, media_type=resp.content_type, headers=headers)


class Server:
    """The app and its worker pool. ``Server(config).app`` is an ASGI app."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = Metrics()
        self.metrics.workers.set(config.workers)
        self.files = resolve_model_files(config.model_dir, config.precision, gallery=config.gallery)
        task = config.task
        if task in FACE_TASKS and not self.files.has_faces:
            raise_from = f"task {task.value!r} needs yunet_320-{config.precision}.tflite and " \
                         f"sface-{config.precision}.tflite in the model directory"
            from ..errors import ZooError
            raise ZooError(raise_from)
        eager: tuple = ("faces",) if task in FACE_TASKS else (self.files.default_model or "",)
        spec = WorkerSpec(self.files, config.interpreter_threads, config.batch, eager,
                          writable_gallery=config.token is not None)
        self.pool = WorkerPool(config.workers, spec, max_queue=config.max_queue, metrics=self.metrics)
        self._admitted = 0
        routes = [
            Route("/ping", self.ping, methods=["GET"]),
            Route("/invocations", self.invocations, methods=["POST"]),
            Route("/metrics", self.metrics_route, methods=["GET"]),
            Route("/v1/faces/{op}", self.faces, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{name}/predict", self.predict, methods=["POST"]),
            Route("/v1/gallery/people", self.people, methods=["GET"]),
            Route("/v1/gallery/people/{name}", self.person, methods=["POST", "DELETE"]),
        ]
        self.app = Starlette(routes=routes, lifespan=self._lifespan,
                             exception_handlers={HTTPException: self._http_error})

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.pool.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self.pool.close)

    async def _http_error(self, request, exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        route = "unmatched"
        self.metrics.requests.labels(route, str(exc.status_code)).inc()
        return _to_http(error_response(exc.status_code, codes.get(exc.status_code, "http_error"),
                                       f"{request.method} {request.url.path}: {exc.detail}"), exc.headers)

    # -- plumbing --------------------------------------------------------------------
    async def _run(self, route: str, request: HTTPRequest, build) -> HTTPResponse:
        """Admission control, body limit, dispatch, timeout, metrics, access log."""
        t0 = time.perf_counter()
        status = 500
        headers: dict = {}
        admitted = False
        try:
            if self._admitted >= self.config.max_queue:
                self.metrics.rejected.inc()
                raise _Reject(error_response(503, "overloaded", "the server is at capacity; retry after a second"),
                              {"Retry-After": RETRY_AFTER_S})
            self._admitted += 1
            admitted = True
            req = await build(request)
            if isinstance(req, Response):
                resp = req
            else:
                req.deadline = time.time() + self.config.timeout_s
                try:
                    resp = await asyncio.wait_for(self.pool.submit(req), self.config.timeout_s)
                except asyncio.TimeoutError:
                    resp = error_response(504, "timeout", f"no answer within {self.config.timeout_s:g} s "
                                                          "(SAGEMAKER_MODEL_SERVER_TIMEOUT)")
                except Overloaded:
                    self.metrics.rejected.inc()
                    raise _Reject(error_response(503, "overloaded", "the server is at capacity; retry after a "
                                                                    "second"), {"Retry-After": RETRY_AFTER_S})
            if resp.status == 503:
                headers["Retry-After"] = RETRY_AFTER_S
        except _Reject as r:
            resp, headers = r.response, r.headers
        except ClientDisconnect:
            resp = error_response(400, "client_disconnected", "the client went away before the body was read")
        except Exception:  # noqa: BLE001 - answer, log the type only (never the body)
            log.exception("unexpected error on %s", route)
            resp = error_response(500, "internal_error", "internal error")
        finally:
            if admitted:
                self._admitted -= 1
        status = resp.status
        dt = time.perf_counter() - t0
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(dt)
        if self.config.access_log:
            log.info("%s %s %d %.1fms", request.method, route, status, dt * 1e3)
        return _to_http(resp, headers)

    async def _body(self, request: HTTPRequest) -> bytes:
        limit = self.config.max_payload_bytes
        too_big = _Reject(error_response(413, "payload_too_large",
                                         f"the body is larger than {limit} bytes (SAGEMAKER_MAX_PAYLOAD_IN_MB)"))
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                if int(cl) > limit:
                    raise too_big
            except ValueError:
                raise _Reject(error_response(400, "bad_request", "invalid Content-Length")) from None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _params(request: HTTPRequest, *, sagemaker: bool = False) -> dict:
        params = dict(request.query_params)
        if sagemaker:  # SageMaker forwards InvokeEndpoint's CustomAttributes as this header
            attrs = request.headers.get("x-amzn-sagemaker-custom-attributes", "")
            for k, v in parse_qsl(attrs.replace(",", "&").replace(";", "&"), keep_blank_values=False):
                params.setdefault(k.strip(), v.strip())
        return params

    @staticmethod
    def _check_type(request: HTTPRequest, allowed: tuple, what: str) -> str:
        ct = request.headers.get("content-type", "")
        mt = media_type(ct)
        if not any(mt == a or (a.endswith("/") and mt.startswith(a)) for a in allowed):
            raise _Reject(error_response(415, "unsupported_media_type",
                                         f"{what}: content type {mt or '(none)'!r} is not supported; send one of "
                                         f"{', '.join(a + '*' if a.endswith('/') else a for a in allowed)}"))
        return ct

    @staticmethod
    def _check_accept_json(request: HTTPRequest) -> None:
        acc = request.headers.get("accept", "")
        if acc and not any(m in acc for m in ("*/*", "application/*", JSON_MIME)):
            raise _Reject(error_response(406, "not_acceptable", f"this route answers {JSON_MIME} only"))

    def _auth(self, request: HTTPRequest) -> None:
        tok = self.config.token
        if tok is None:
            raise _Reject(error_response(403, "gallery_writes_disabled",
                                         "gallery routes are off: start the server with a token "
                                         "(EDGELITE_SERVE_TOKEN_FILE or EDGELITE_SERVE_TOKEN)"))
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), tok.encode()):
            raise _Reject(error_response(401, "unauthorized", "missing or wrong bearer token"),
                          {"WWW-Authenticate": 'Bearer realm="edgelite-gallery"'})

    async def _face_request(self, request: HTTPRequest, op: str, params: dict) -> Request:
        allowed = IMAGE_TYPES + ((JSON_MIME, "multipart/form-data") if op == "verify" else ())
        ct = self._check_type(request, allowed, f"faces/{op}")
        self._check_accept_json(request)
        body = await self._body(request)
        if media_type(ct) == "multipart/form-data":
            params["_files"] = await self._form_files(request, body)
            body = b""
        return Request(0, op, body, ct, JSON_MIME, params)

    @staticmethod
    async def _form_files(request: HTTPRequest, body: bytes) -> dict:
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        replay = HTTPRequest(request.scope, receive)
        try:
            form = await replay.form(max_files=4, max_fields=16)
        except Exception as e:  # noqa: BLE001 - multipart parser errors are the client's
            raise _Reject(error_response(400, "bad_multipart", f"body is not valid multipart/form-data: {e}")) \
                from None
        files = {}
        for k in ("a", "b"):
            f = form.get(k)
            if f is not None and hasattr(f, "read"):
                files[k] = (f.content_type or "image/*", await f.read())
        await form.close()
        return files

    # -- routes ----------------------------------------------------------------------
    async def ping(self, request: HTTPRequest) -> HTTPResponse:
        ok = self.pool.ready
        self.metrics.requests.labels("/ping", "200" if ok else "503").inc()
        return HTTPResponse(b"", status_code=200 if ok else 503)

    async def metrics_route(self, request: HTTPRequest) -> HTTPResponse:
        self.metrics.queue_depth.set(self.pool.queued)
        self.metrics.inflight.set(self.pool.pending)
        return HTTPResponse(self.metrics.render(), media_type=self.metrics.content_type)

    async def invocations(self, request: HTTPRequest) -> HTTPResponse:
        task = self.config.task

        async def build(req):
            params = self._params(req, sagemaker=True)
            if task == Task.MODEL:
                return await self._model_request(req, self.files.default_model, params)
            return await self._face_request(req, task.value, params)

        return await self._run("/invocations", request, build)

    async def faces(self, request: HTTPRequest) -> HTTPResponse:
        op = request.path_params["op"]
        if op not in ("detect", "embed", "identify", "verify"):
            return await self._http_error(request, HTTPException(404, f"unknown face operation {op!r}; use "
                                                                      "detect, embed, identify or verify"))

        async def build(req):
            return await self._face_request(req, op, self._params(req))

        return await self._run(f"/v1/faces/{op}", request, build)

    async def _model_request(self, request: HTTPRequest, name: str | None, params: dict) -> Request:
        ct = self._check_type(request, MODEL_TYPES, "models")
        accept = request.headers.get("accept", "") or JSON_MIME
        if NPY_MIME in accept:
            accept = NPY_MIME
        elif NPZ_MIME in accept:
            accept = NPZ_MIME
        elif not any(m in accept for m in ("*/*", "application/*", JSON_MIME)):
            raise _Reject(error_response(406, "not_acceptable",
                                         f"answers are {JSON_MIME}, {NPY_MIME} or {NPZ_MIME}"))
        else:
            accept = JSON_MIME
        body = await self._body(request)
        return Request(0, "model", body, ct, accept, params, model=name)

    async def predict(self, request: HTTPRequest) -> HTTPResponse:
        name = request.path_params["name"]

        async def build(req):
            if name not in self.files.models:
                return error_response(404, "unknown_model", f"no model named {name!r}; GET /v1/models lists them")
            return await self._model_request(req, name, self._params(req))

        return await self._run("/v1/models/{name}/predict", request, build)

    async def list_models(self, request: HTTPRequest) -> HTTPResponse:
        async def build(req):
            return Request(0, "models")

        return await self._run("/v1/models", request, build)

    async def people(self, request: HTTPRequest) -> HTTPResponse:
        async def build(req):
            self._auth(req)
            return Request(0, "people")

        return await self._run("/v1/gallery/people", request, build)

    async def person(self, request: HTTPRequest) -> HTTPResponse:
        name = request.path_params["name"]
        route = "/v1/gallery/people/{name}"

        async def build(req):
            self._auth(req)
            params = {**self._params(req), "name": name}
            if req.method == "DELETE":
                return Request(0, "remove", params=params)
            return await self._face_request(req, "enroll", params)

        return await self._run(route, request, build)


def create_app(config: ServeConfig):
    """An ASGI app for ``config`` (workers start with the app's lifespan)."""
    return Server(config).app


def serve(config: ServeConfig, *, log_level: str = "info") -> None:
    """Run the server until SIGTERM/SIGINT; then stop accepting, finish what is in
    flight (at most ``config.graceful_shutdown_s``), stop the workers and return."""
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(config)
    uv = uvicorn.Config(server.app, host=config.host, port=config.port, log_level=log_level,
                        access_log=False, timeout_graceful_shutdown=int(config.graceful_shutdown_s),
                        lifespan="on", server_header=False, proxy_headers=False,
                        timeout_keep_alive=65)  # > an ALB's 60 s idle timeout, so the LB closes first
    _uvicorn_class()(uv).run()


def _uvicorn_class():
    import signal
    import threading

    import uvicorn

    class _Server(uvicorn.Server):
        """Uvicorn, except that a drained SIGTERM/SIGINT ends with exit code 0.

        Uvicorn re-raises the captured signal after its graceful shutdown, so the
        process dies of SIGTERM (143) even though every request was answered; an
        orchestrator then reports a crash. Here the handlers are installed the same
        way (``handle_exit``), but not re-raised: the shutdown was requested and clean.
        """

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return _Server

