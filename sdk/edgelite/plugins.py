"""Converter hooks, found through entry points: the runtime never imports the converter.

The import arrow runs one way: ``edgelite_convert`` (workstation, TensorFlow) uses
the runtime; the runtime (``sdk/``) does not import the converter package, not even
lazily. The few runtime commands that need it (``edgelite convert``, ``edgelite
models build``, ``edgelite serve`` on an empty cache) look it up here, through the
entry points the distribution declares in ``pyproject.toml``::

    [project.entry-points."edgelite.converter"]
    cli = "edgelite_convert.cli"                 # add_convert_arguments(parser), run_convert(args)
    build_zoo = "edgelite_convert.zoo:build_zoo" # build_zoo(cache=, source_dir=, force=, progress=)

so another converter package could provide them too.
"""
from __future__ import annotations

import importlib.util

from .errors import EdgeliteError

GROUP = "edgelite.converter"
#: Modules the converter hooks need at run time (checked without importing them).
REQUIRED = ("tensorflow", "onnx")


def converter_hook(name: str):
    """Load the converter hook ``name`` (``cli`` or ``build_zoo``).

    Raises:
        EdgeliteError: the convert extra is not installed (the message says which
            modules are missing and how to install them).
    """
    from importlib.metadata import entry_points

    eps = list(entry_points(group=GROUP, name=name))
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if not eps or missing:
        what = ", ".join(missing) if missing else f"the {GROUP!r} entry point {name!r}"
        raise EdgeliteError(f"this command needs the converter (missing: {what}): "
                            "pip install 'edgelite[convert]' (on a workstation: it brings TensorFlow)")
    return eps[0].load()
