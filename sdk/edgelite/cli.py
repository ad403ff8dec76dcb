"""The ``edgelite`` command line.

Runtime commands (inspect, bench, doctor, face commands) need only the base
install; ``convert`` and ``models build`` need the ``convert`` extra and say so.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import EdgeliteError


def _dump(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_inspect(a) -> int:
    from .inspect import inspect_model

    r = inspect_model(a.model)
    if a.json:
        _dump(r.to_dict())
    else:
        print(r.to_text())
    return 0


def cmd_bench(a) -> int:
    from .bench import benchmark

    delegates = () if a.no_xnnpack else ("xnnpack",)
    if a.delegate:
        delegates = (*delegates, *a.delegate)
    r = benchmark(a.model, num_threads=a.threads, runs=a.runs, min_seconds=a.min_seconds,
                  warmup=a.warmup, delegates=delegates, backend=a.backend)
    if a.json:
        _dump(r.to_dict())
    else:
        print(r.to_text())
    return 0


def cmd_doctor(a) -> int:
    from .doctor import report, to_text

    r = report(include_tensorflow=a.tensorflow)
    if a.json:
        _dump(r)
    else:
        print(to_text(r))
    return 0


def run_convert_command(argv: list[str]) -> int:
    """``edgelite convert ...``: the converter parses its own arguments (found through
    its entry point, so building this CLI imports nothing from it)."""
    from .plugins import converter_hook

    conv = converter_hook("cli")
    p = argparse.ArgumentParser(prog="edgelite convert", description="convert Keras/SavedModel/ONNX to "
                                "full-integer int8 TFLite", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    conv.add_convert_arguments(p)
    return int(conv.run_convert(p.parse_args(argv)) or 0)


def cmd_models(a) -> int:
    from . import zoo

    if a.models_cmd == "list":
        entries = zoo.list_models(a.cache_dir)
        if a.json:
            _dump([e.to_dict() for e in entries])
        else:
            if not entries:
                print(f"no models built in {zoo.models_dir(a.cache_dir)}; run `edgelite models build`")
            for e in entries:
                print(f"{e.name:6s} {e.precision:8s} {e.size / 1e6:7.2f} MB  {e.sha256[:16]}  {e.path}")
        return 0
    if a.models_cmd == "build":
        from .plugins import converter_hook

        build_zoo = converter_hook("build_zoo")
        report = build_zoo(cache=a.cache_dir, source_dir=a.source_dir, force=a.force,
                           progress=not a.json)
        if a.json:
            _dump(report)
        return 0
    raise EdgeliteError("use `edgelite models build` or `edgelite models list`")


def cmd_serve(a) -> int:
    from .serve.cli import run

    return run(a)


def cmd_batch(a) -> int:
    from .batch.cli import run

    return run(a)


def _face_cli():
    from .face import cli as face_cli

    return face_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgelite", description="On-device int8 TFLite inference and face recognition.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("inspect", help="inputs/outputs, ops, full-integer check, XNNPACK coverage, metadata")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("bench", help="benchmark a .tflite model (like TFLite's benchmark_model)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("model")
    s.add_argument("--threads", type=int, default=None, help="interpreter threads (default: min(cores, 4))")
    s.add_argument("--runs", type=int, default=50, help="minimum timed runs")
    s.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed duration")
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--no-xnnpack", action="store_true", help="builtin kernels only (baseline)")
    s.add_argument("--delegate", action="append", help="external delegate: 'edgetpu' or a .so path")
    s.add_argument("--backend", choices=["ai_edge_litert", "tflite_runtime", "tensorflow"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("doctor", help="Python, platform, CPU, backends and delegates found")
    s.add_argument("--json", action="store_true")
    s.add_argument("--tensorflow", action="store_true", help="also probe the tensorflow backend (slow import)")
    s.set_defaults(fn=cmd_doctor)

    # Listed for --help only: main() hands `convert ...` to the converter's own parser.
    sub.add_parser("convert", add_help=False, help="convert Keras/SavedModel/ONNX to full-integer int8 TFLite "
                   "(needs the convert extra; `edgelite convert --help` for its options)")

    s = sub.add_parser("models", help="zoo models: build (needs the convert extra) / list")
    msub = s.add_subparsers(dest="models_cmd", required=True)
    b = msub.add_parser("build", help="fetch YuNet + SFace (hash-pinned), build int8 and float32 TFLite")
    b.add_argument("--cache-dir", default=None, help="default: $EDGELITE_CACHE_DIR or $XDG_CACHE_HOME/edgelite")
    b.add_argument("--source-dir", default=None, help="directory with the two source ONNX files")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_models)
    ls_ = msub.add_parser("list", help="built models: name, precision, path, size, SHA-256")
    ls_.add_argument("--cache-dir", default=None)
    ls_.add_argument("--json", action="store_true")
    ls_.set_defaults(fn=cmd_models)

    s = sub.add_parser("serve", help="SageMaker-compatible HTTP server: worker processes, micro-batching, "
                       "backpressure, metrics (needs the serve extra)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from .serve.cli import add_arguments as add_serve_arguments

    add_serve_arguments(s)
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("batch", help="a task over many files: sharded Parquet, resumable, local processes or Ray",
                       description="Run a task over many files; see docs/batch.md. Defaults are in the help texts.")
    from .batch.cli import add_arguments as add_batch_arguments  # argparse only: pyarrow/Ray load at run time

    add_batch_arguments(s)
    s.set_defaults(fn=cmd_batch)

    try:
        _face_cli().add_commands(sub)
    except ImportError:
        pass
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["convert"]:
            return run_convert_command(argv[1:])
        a = build_parser().parse_args(argv)
        return int(a.fn(a) or 0)
    except EdgeliteError as e:
        print(f"edgelite: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
