"""Import layering: the arrows run down, never up.

* Nothing under ``sdk/`` imports ``edgelite_convert`` (the converter uses the
  runtime, not the other way round; the runtime finds it through entry points).
* Inside ``sdk/edgelite``, a module imports only from its own layer or below:

    core (errors, quant, preprocess, image, model, zoo, task, ...)
      < face (the face tasks)
      < serve, batch (scale, built on the tasks)
      < cli (the command line)

Function-level (lazy) imports count too: a lazy arrow is still an arrow.
"""
from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[1] / "sdk" / "edgelite"

LAYERS = {"face": 1, "serve": 2, "batch": 2, "cli": 3, "__init__": 3}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SDK.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> tuple[int, str]:
    """(rank, group) of an ``edgelite.*`` module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in ("face", "serve", "batch"):
        return LAYERS[top], top
    if top == "cli" or (top == "__init__" and len(parts) == 1):
        return 3, "cli"
    return 0, "core"


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    pkg = _module_name(path)
    if path.name != "__init__.py":
        pkg = pkg.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x, y
                    for a in node.names:
                        yield node.lineno, f"{target}.{a.name}"
                    continue
                yield node.lineno, target
            else:
                yield node.lineno, node.module or ""


def _arrows():
    for path in sorted(SDK.rglob("*.py")):
        yield path, _module_name(path), list(_imports(path))


def test_runtime_never_imports_the_converter():
    bad = [f"{p.relative_to(SDK.parent)}:{line} imports {mod}"
           for p, _, imps in _arrows() for line, mod in imps if mod.split(".")[0] == "edgelite_convert"]
    assert not bad, "sdk/ must not import the converter package:\n" + "\n".join(bad)


def test_imports_run_down_the_layers():
    bad = []
    for path, me, imps in _arrows():
        rank, group = _layer(me)
        for line, mod in imps:
            if mod.split(".")[0] != "edgelite":
                continue
            r, g = _layer(mod)
            if r > rank or (r == rank and g != group and rank > 0):
                bad.append(f"{path.relative_to(SDK.parent)}:{line}: {me} ({group}) imports {mod} ({g})")
    assert not bad, "imports that run up (or across) the layers:\n" + "\n".join(bad)


def test_the_checker_sees_an_upward_arrow(tmp_path):
    """The rule itself: core -> face is an arrow up (as preprocess -> face.geometry was)."""
    assert _layer("edgelite.preprocess") < _layer("edgelite.face.geometry")
    assert _layer("edgelite.face.detector")[0] < _layer("edgelite.serve.engine")[0] < _layer("edgelite.cli")[0]


def test_converter_uses_only_the_documented_runtime_surface():
    """The converter reaches the runtime through public modules, never its privates
    (``edgelite._tflite``, ``Model._prepare``...)."""
    conv = Path(__file__).resolve().parents[1] / "converters" / "edgelite_convert"
    bad = []
    for path in sorted(conv.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for m in mods:
                if m.startswith("edgelite.") and any(p.startswith("_") for p in m.split(".")[1:]):
                    bad.append(f"{path.name}:{node.lineno} {m}")
    assert not bad, "the converter imports runtime privates:\n" + "\n".join(bad)
