"""The supported-op list of ``docs/converters.md``, generated from the importer's handler registry.

``python -m edgelite_convert.opdocs [docs/converters.md]`` rewrites the block between
the ``supported-ops`` markers; ``tests/test_onnx_fold.py`` fails when the docs are
out of date. TensorFlow is not imported (the registry is TensorFlow-free to read).
"""
from __future__ import annotations

import sys
from pathlib import Path

BEGIN, END = "<!-- supported-ops:begin (generated: python -m edgelite_convert.opdocs) -->", \
    "<!-- supported-ops:end -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "converters.md"


def supported_ops_markdown() -> str:
    from .onnx_ops import SUPPORTED_OPS

    ops = ", ".join(f"`{op}`" for op in SUPPORTED_OPS)
    return (f"{BEGIN}\n**{len(SUPPORTED_OPS)} ONNX op types** (default domain, opsets 7-18) have a handler: {ops}.\n\n"
            "Any other standard op is accepted when its outputs are constants once the input shape is fixed "
            "(shape-only subgraphs such as `Range`/`Expand` anchor grids): it is folded before import "
            "(`report[\"onnx_folded\"]`). Everything else is refused before TensorFlow is loaded, with node "
            f"names and a fix per op type.\n{END}")


def update(path: Path = DOC) -> bool:
    """Rewrite the generated block of ``path``; return True when it changed."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: markers {BEGIN!r} / {END!r} not found")
    a, b = text.index(BEGIN), text.index(END) + len(END)
    new = text[:a] + supported_ops_markdown() + text[b:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update(Path(sys.argv[1]) if len(sys.argv) > 1 else DOC)
    print("updated" if changed else "up to date")
