"""Reading a batch output back (rows and errors), whichever engine wrote it."""
from __future__ import annotations

import os


def _dataset(path: str, fmt: str):
    import pyarrow.dataset as ds

    return ds.dataset(path, format="json" if fmt == "jsonl" else "parquet")


def read_output(output: str | os.PathLike, *, sort: bool = True):
    """All rows of a run as one ``pyarrow.Table`` (files named ``_*``/``.*`` are skipped).

    Args:
        output: the run's output folder (or URI).
        sort: order by ``path`` then ``face`` (engines write shards in their own order).
    """
    from ._arrow import require_pyarrow

    require_pyarrow()
    out = os.fspath(output)
    fmt = "jsonl" if any(n.endswith(".jsonl") for n in _names(out)) else "parquet"
    table = _dataset(out, fmt).to_table()
    if sort and table.num_rows:
        keys = [("path", "ascending")] + ([("face", "ascending")] if "face" in table.column_names else [])
        table = table.sort_by(keys)
    return table


def read_errors(output: str | os.PathLike):
    """The errors table of a completed run, sorted by path."""
    from ._arrow import errors_schema, require_pyarrow

    pa, pq = require_pyarrow()
    out = os.fspath(output)
    for ext in ("parquet", "jsonl"):
        p = os.path.join(out, f"_errors.{ext}")
        if os.path.exists(p):
            from .options import OutputFormat
            from .output import read_table

            t = read_table(p, OutputFormat(ext), errors_schema())
            return t.sort_by([("path", "ascending")]) if t.num_rows else t
    return pa.Table.from_pylist([], schema=errors_schema())


def _names(out: str) -> list[str]:
    try:
        return os.listdir(out)
    except OSError:
        return []
