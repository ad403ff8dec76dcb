"""Embed the edgelite metadata block into a ``.tflite`` flatbuffer.

Uses the flatbuffers object API generated from the TFLite schema that ships in
``ai_edge_litert`` (``schema_py_generated``): unpack, append one buffer plus one
``Metadata{name="edgelite", buffer=i}`` entry (replacing an existing one), repack
with the ``TFL3`` identifier. TensorFlow is not needed.
"""
from __future__ import annotations

import flatbuffers
import numpy as np

from edgelite.errors import ConversionError
from edgelite.metadata import METADATA_NAME, EdgeliteMetadata


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover - older installs
        from tensorflow.lite.python import schema_py_generated as s
    return s


def embed_metadata(model_bytes: bytes, metadata: EdgeliteMetadata | bytes, name: str = METADATA_NAME) -> bytes:
    """Return ``model_bytes`` with ``metadata`` stored under ``name`` (replaces an existing entry)."""
    s = _schema()
    payload = metadata.to_json_bytes() if isinstance(metadata, EdgeliteMetadata) else bytes(metadata)
    try:
        m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"cannot parse the converted model to add metadata: {e}") from e
    buf = s.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    m.buffers = list(m.buffers or [])
    metas = [x for x in (m.metadata or []) if (x.name.decode() if isinstance(x.name, bytes) else x.name) != name]
    m.buffers.append(buf)
    entry = s.MetadataT()
    entry.name = name
    entry.buffer = len(m.buffers) - 1
    metas.append(entry)
    m.metadata = metas
    b = flatbuffers.Builder(len(model_bytes) + len(payload) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
