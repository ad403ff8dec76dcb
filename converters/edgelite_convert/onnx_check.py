"""Checks on an ONNX file before anything expensive reads it (no TensorFlow here).

A source model is untrusted input like an image. Three failures used to surface
late and untyped: random bytes named ``.onnx`` died in protobuf with a
``DecodeError`` traceback; a model declaring ``ir_version`` 999 converted part of
the way and then died inside onnxruntime; and an external-data tensor whose file
is far larger than the tensor's declared shape (a 2 GiB sparse file behind a
small weight) was read completely by ``onnx.load`` (6.8 GB RSS) before anything
refused it. :func:`check_onnx_file` catches all three from the protobuf header
and ``stat`` calls alone, and raises :class:`~edgelite.errors.InvalidSourceError`
with the reason. It imports ``onnx`` only: the caller runs it before importing
the TensorFlow-based importer.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from edgelite.errors import InvalidSourceError

#: Largest ONNX protobuf we read (protobuf's own hard limit is 2 GiB).
MAX_ONNX_BYTES: int = 2 * 1024**3 - 1
#: Largest total of external tensor data we accept: a TFLite flatbuffer cannot
#: exceed 2 GiB, so larger weights could never convert.
MAX_EXTERNAL_BYTES: int = 2 * 1024**3


def _itemsize(data_type: int) -> int | None:
    import onnx

    try:
        return int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize)
    except Exception:  # noqa: BLE001 - STRING/UNDEFINED/unknown: no fixed size
        return None


def check_onnx_file(path: str | os.PathLike):
    """Load an ONNX file's graph (without external data) after checking it is sane.

    Checks, in order: a regular file under :data:`MAX_ONNX_BYTES`; it parses as
    an ONNX ``ModelProto`` with a graph; ``ir_version`` and every opset are ones
    the installed ``onnx`` knows (newer ones cannot be checked or run by
    onnxruntime); every external-data tensor names a file inside the model's
    folder (no absolute paths, no ``..``) whose size matches the tensor's declared
    shape and dtype, and the total stays under :data:`MAX_EXTERNAL_BYTES`.

    Returns:
        The ``onnx.ModelProto``, loaded with ``load_external_data=False``.

    Raises:
        InvalidSourceError: the reason, naming the file and the value.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    name = path.name
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidSourceError(f"{name}: cannot read the ONNX file ({exc.strerror or exc})") from None
    if not path.is_file():
        raise InvalidSourceError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise InvalidSourceError(f"{name}: empty file (0 bytes), not an ONNX model")
    if st.st_size > MAX_ONNX_BYTES:
        raise InvalidSourceError(f"{name}: {st.st_size:,} bytes is over protobuf's 2 GiB limit; "
                                 "store the weights as external data")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidSourceError(f"{name}: not an ONNX model (the protobuf does not parse: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - onnx raises various errors on garbage; all mean "not ONNX"
        raise InvalidSourceError(f"{name}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    # Protobuf is permissive: random bytes sometimes parse into an empty message.
    if model.ir_version <= 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise InvalidSourceError(f"{name}: not an ONNX model (ir_version {model.ir_version}, "
                                 f"{len(model.graph.node)} graph nodes)")
    if model.ir_version > onnx.IR_VERSION:
        raise InvalidSourceError(
            f"{name}: ir_version {model.ir_version} is newer than this onnx {onnx.__version__} supports "
            f"(max {onnx.IR_VERSION}); re-export the model with an older exporter setting, or upgrade onnx "
            "and onnxruntime"
        )
    max_opset = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > max_opset:
            raise InvalidSourceError(f"{name}: opset {imp.version} is newer than this onnx {onnx.__version__} "
                                     f"supports (max {max_opset}); re-export with an older opset")
    _check_external_data(model, path)
    return model


def _iter_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_tensors(attr.g)
            for g in attr.graphs:
                yield from _iter_tensors(g)


def _check_external_data(model, path: Path) -> None:
    import onnx

    base = path.parent.resolve()
    total = 0
    for t in _iter_tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        where = f"{path.name}: tensor {t.name!r}"
        loc = info.get("location", "")
        if not loc:
            raise InvalidSourceError(f"{where}: external data without a location")
        target = (base / loc).resolve()
        if Path(loc).is_absolute() or (target != base and base not in target.parents):
            raise InvalidSourceError(f"{where}: external data location {loc!r} is outside the model's folder")
        try:
            fst = target.stat()
        except OSError:
            raise InvalidSourceError(f"{where}: external data file {loc!r} is missing") from None
        if not target.is_file():
            raise InvalidSourceError(f"{where}: external data {loc!r} is not a regular file")
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise InvalidSourceError(f"{where}: external data offset/length are not integers: {info}") from None
        if offset < 0 or (length is not None and length < 0):
            raise InvalidSourceError(f"{where}: negative external data offset/length: {info}")
        item = _itemsize(t.data_type)
        if item is None:
            raise InvalidSourceError(f"{where}: external data of dtype {t.data_type} has no fixed size")
        if any(d < 0 for d in t.dims):
            raise InvalidSourceError(f"{where}: negative dimension in {list(t.dims)}")
        expected = math.prod(int(d) for d in t.dims) * item
        available = fst.st_size - offset
        got = length if length is not None else available
        if got != expected:
            raise InvalidSourceError(
                f"{where}: shape {list(t.dims)} needs {expected:,} bytes but its external data "
                f"({loc!r}, offset {offset:,}, {'length' if length is not None else 'to end of file'}) "
                f"declares {got:,}; refusing before reading it"
            )
        if length is not None and offset + length > fst.st_size:
            raise InvalidSourceError(f"{where}: external data {loc!r} is {fst.st_size:,} bytes, shorter than "
                                     f"offset {offset:,} + length {length:,}")
        total += expected
        if total > MAX_EXTERNAL_BYTES:
            raise InvalidSourceError(f"{path.name}: external data totals over {MAX_EXTERNAL_BYTES:,} bytes; "
                                     "a TFLite model cannot hold that many weights")


__all__ = ["check_onnx_file", "MAX_ONNX_BYTES", "MAX_EXTERNAL_BYTES"]
