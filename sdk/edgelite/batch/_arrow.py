"""pyarrow, imported lazily, and the fixed schemas of the batch outputs.

Every shard of a task has exactly the schema built here, whatever its rows (an
empty shard too), so the shards of a run, of a resumed run and of the Ray engine
concatenate without casts.
"""
from __future__ import annotations

from ..errors import EdgeliteError
from .options import Task

#: Columns that hold wall-clock timings: they differ between runs of the same
#: inputs, so comparisons of two runs leave them out.
TIMING_COLUMNS = ("decode_ms", "detect_ms", "embed_ms", "infer_ms")


def require_pyarrow():
    """``(pyarrow, pyarrow.parquet)`` or an error naming the extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise EdgeliteError("edgelite batch writes Parquet with pyarrow: pip install 'edgelite[batch]'") from e
    return pa, pq


def face_schema(task: Task, embed_dim: int = 128):
    """Schema of the ``detect`` / ``embed`` / ``identify`` rows: one row per face.

    ``box`` is ``(x_min, y_min, x_max, y_max)`` pixels; ``landmarks`` five ``(x, y)``
    pixels ordered right eye, left eye, nose tip, right mouth corner, left mouth
    corner; ``score`` the detector's; ``embedding`` L2-normalised (cosine =
    dot product); ``name`` null for an unknown face; ``match_score`` its cosine.
    ``model_id`` is the embedder's id for embed/identify (what galleries stamp on
    templates) and the detector's for detect; ``detector_id`` always the detector's.
    """
    pa, _ = require_pyarrow()
    task = Task(task)
    f32 = pa.float32()
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("face", pa.int32(), nullable=False),
        pa.field("image_width", pa.int32(), nullable=False),
        pa.field("image_height", pa.int32(), nullable=False),
        pa.field("box", pa.list_(f32, 4), nullable=False),
        pa.field("landmarks", pa.list_(pa.list_(f32, 2), 5), nullable=False),
        pa.field("score", f32, nullable=False),
    ]
    if task in (Task.EMBED, Task.IDENTIFY):
        fields.append(pa.field("embedding", pa.list_(f32, embed_dim), nullable=False))
    if task == Task.IDENTIFY:
        fields += [pa.field("name", pa.string()), pa.field("match_score", f32)]
    fields += [pa.field("model_id", pa.string(), nullable=False),
               pa.field("detector_id", pa.string(), nullable=False),
               pa.field("decode_ms", f32), pa.field("detect_ms", f32)]
    if task in (Task.EMBED, Task.IDENTIFY):
        fields.append(pa.field("embed_ms", f32))
    return pa.schema(fields, metadata={"edgelite.task": task.value})


def model_schema(outputs):
    """Schema of the ``model`` rows: one row per input, one column per model output.

    Each output column holds the flattened, dequantised ``float32`` values of that
    input's slice (its per-example shape is in the schema metadata), so any model
    fits a fixed schema.
    """
    import json

    pa, _ = require_pyarrow()
    fields = [pa.field("path", pa.string(), nullable=False)]
    shapes = {}
    for name, shape in outputs:
        n = 1
        for d in shape:
            n *= int(d)
        fields.append(pa.field(name, pa.list_(pa.float32(), n), nullable=False))
        shapes[name] = [int(d) for d in shape]
    fields += [pa.field("model_id", pa.string(), nullable=False), pa.field("decode_ms", pa.float32()),
               pa.field("infer_ms", pa.float32())]
    return pa.schema(fields, metadata={"edgelite.task": "model", "edgelite.output_shapes": json.dumps(shapes)})


def errors_schema():
    """The errors table: one row per input that gave no row, with why.

    ``reason`` is a short code: ``unreadable`` (missing, a folder or special file,
    too big, permission), ``not_an_image`` (empty, truncated, corrupt, unknown
    format), ``too_large`` (pixels above the cap), ``no_face``, ``bad_input`` (an
    array that does not fit the model), ``failed`` (anything else). ``message``
    says what exactly.
    """
    pa, _ = require_pyarrow()
    return pa.schema([pa.field("path", pa.string(), nullable=False),
                      pa.field("reason", pa.string(), nullable=False),
                      pa.field("message", pa.string(), nullable=False)],
                     metadata={"edgelite.table": "errors"})


def table_from_rows(rows: list[dict], schema):
    pa, _ = require_pyarrow()
    return pa.Table.from_pylist(rows, schema=schema)
