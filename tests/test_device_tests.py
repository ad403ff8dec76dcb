"""Smoke tests of the device benchmark scripts (``device_tests/``): they run, in
``--quick`` mode, on real models, and write reports that parse.

Timings are never asserted (2 shared cores; benchmarks report, tests check
structure). The zoo-model runs skip, saying how to build the zoo, when the zoo
is not built; the tiny fixture model in ``tests/data`` always runs.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DT = ROOT / "device_tests"
TINY = ROOT / "tests" / "data" / "conv_int8.tflite"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYSTEM_KEYS = {"device_id", "timestamp", "board", "cpu_model", "cpu_features", "cores", "governor", "python",
               "backend", "backend_version", "delegates", "edgelite", "models", "thermal_at_start"}

sys.path.insert(0, str(DT))
import _common  # noqa: E402


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, str(DT / script), *args], capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT)
    return p


def _has_matplotlib() -> bool:
    return _common.matplotlib_or_none() is not None


def _check_common(rep: dict, kind: str):
    assert rep["schema"] == _common.SCHEMA and rep["kind"] == kind
    assert SYSTEM_KEYS <= set(rep["system"]), SYSTEM_KEYS - set(rep["system"])
    assert rep["system"]["device_id"] == "smoke-test"
    for m in rep["system"]["models"]:
        assert len(m["sha256"]) == 64
    assert rep["metrics"], "no metrics table"
    for k, m in rep["metrics"].items():
        assert set(m) == {"value", "unit", "better"} and m["better"] in ("lower", "higher"), k
        assert m["value"] == m["value"], f"NaN metric {k}"


def _check_reports(out: Path, stem: str, rep: dict):
    md = (out / f"{stem}.md").read_text()
    assert md.startswith("# ") and "| device id | smoke-test |" in md
    with open(out / f"{stem}.metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["metric"] for r in rows} == set(rep["metrics"])
    if _has_matplotlib():
        assert rep["plots"], "matplotlib is installed but no plot was written"
        for p in rep["plots"]:
            assert (out / p).read_bytes()[:8] == PNG_MAGIC
            assert f"]({p})" in md
    else:
        assert "plots skipped" in md


def _zoo_present(*names: str) -> list[str]:
    from edgelite import zoo

    return [n for n in names if not zoo.model_path(*n.split("-")).is_file()]


ZOO_HINT = "zoo not built (edgelite models build): the zoo-model smoke run needs it"


def test_bench_models_tiny_model_with_sustained(tmp_path):
    out_json = tmp_path / "extra.json"
    p = _run("bench_models.py", "--quick", "--no-zoo", str(TINY), "--threads", "1,2", "--results-dir",
             str(tmp_path), "--device-id", "smoke-test", "--json", str(out_json),
             "--duration", "0.02", "--interval", "0.4")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "smoke-test"
    rep = json.loads((out / "models.json").read_text())
    assert json.loads(out_json.read_text())["metrics"] == rep["metrics"]
    _check_common(rep, "models")
    assert [(r["label"], r["num_threads"]) for r in rep["results"]] == [("conv_int8", 1), ("conv_int8", 2)]
    for r in rep["results"]:
        assert {"init_ms", "first_inference_ms", "latency", "peak_rss_mb", "rss_before_mb"} <= set(r)
        lat = r["latency"]
        assert {"mean", "std", "p50", "p90", "p99", "count"} <= set(lat)
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["std"] >= 0 and lat["count"] >= 1
        assert r["init_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
    # the metrics table says what the results say (same numbers, right direction)
    for r in rep["results"]:
        key = f"models/{r['label']}/t{r['num_threads']}"
        assert rep["metrics"][f"{key}/p50_ms"]["value"] == r["latency"]["p50"]
        assert rep["metrics"][f"{key}/init_ms"]["value"] == r["init_ms"]
    assert rep["config"]["isolated_processes"] is True
    iv = rep["sustained"]["intervals"]
    assert iv and {"t_s", "count", "p50_ms", "p90_ms"} <= set(iv[0])
    _check_reports(out, "models", rep)


def test_bench_models_zoo_quick(tmp_path):
    from edgelite import zoo

    present = [e for e in zoo.list_models()]
    if not present:
        pytest.skip(f"no zoo model in {zoo.models_dir()}: {ZOO_HINT}")
    p = _run("bench_models.py", "--quick", "--threads", "1", "--results-dir", str(tmp_path), "--device-id",
             "smoke-test", timeout=240)
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "smoke-test" / "models.json").read_text())
    _check_common(rep, "models")
    assert {r["label"] for r in rep["results"]} == {f"{e.name}-{e.precision}" for e in present}
    assert {m["sha256"] for m in rep["system"]["models"]} == {e.sha256 for e in present}
    _check_reports(tmp_path / "smoke-test", "models", rep)


def test_bench_pipeline_quick(tmp_path):
    missing = _zoo_present("yunet_320-int8", "sface-int8")
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: {ZOO_HINT}")
    p = _run("bench_pipeline.py", "--quick", "--threads", "1", "--results-dir", str(tmp_path), "--device-id",
             "smoke-test", timeout=300)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "smoke-test"
    rep = json.loads((out / "pipeline.json").read_text())
    _check_common(rep, "pipeline")
    (run,) = rep["runs"]
    med = run["summary"]["medians"]
    assert {"vga", "orl", "sq320"} <= set(med)
    for fset, by in med.items():
        i8 = by["int8"]
        assert {"detect", "align", "embed", "match", "e2e"} <= set(i8), fset
        assert {"detect.preprocess", "detect.inference", "detect.decode_nms"} <= set(i8)
        # medians that must be consistent: the whole is at least its parts
        assert 0 < i8["detect.inference"] <= i8["detect"] <= i8["e2e"], fset
        assert i8["embed"] > 0 and i8["e2e"] >= i8["embed"], fset
    if "opencv" in rep["config"]["pipelines"]:
        assert {"embed_int8_vs_opencv", "yunet320_int8_vs_opencv", "e2e_vga_int8_vs_opencv"} <= set(run["targets"])
        for t in run["targets"].values():
            assert t["ratio"] > 0 and t["target"] > 0
    # the issue-13 figure: end-to-end minus the raw invokes, measured in the same run
    o = rep["overhead"]["medians"]
    assert o["yunet_invoke_ms"] > 0 and o["sface_invoke_ms"] > 0
    assert o["overhead_ms"] == pytest.approx(o["end_to_end_ms"] - o["yunet_invoke_ms"] - o["sface_invoke_ms"])
    assert rep["metrics"]["pipeline/t1/overhead_ms"]["value"] == pytest.approx(o["overhead_ms"])
    assert "Overhead beyond the model invokes" in (out / "pipeline.md").read_text()
    # the pipelines really recognise people, not just run
    for pipe, sets in run["correct"].items():
        assert sum(c["correct"] for c in sets.values()) > 0, pipe
    # the models it reports are the files it ran
    from edgelite import zoo
    want = {e.sha256 for e in zoo.list_models() if e.precision == "int8" and e.name in ("yunet_320", "sface")}
    assert want <= {m["sha256"] for m in rep["system"]["models"]}
    _check_reports(out, "pipeline", rep)


def test_bench_overhead_quick(tmp_path):
    missing = _zoo_present("yunet_320-int8", "sface-int8")
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: {ZOO_HINT}")
    p = _run("bench_overhead.py", "--rounds", "5", "--threads", "1", "--results-dir", str(tmp_path),
             "--device-id", "smoke-test", timeout=300)
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "smoke-test" / "overhead.json").read_text())
    m = rep["medians"]
    assert m["yunet_invoke_ms"] > 0 and m["sface_invoke_ms"] > 0
    assert m["overhead_ms"] == pytest.approx(m["end_to_end_ms"] - m["yunet_invoke_ms"] - m["sface_invoke_ms"])
    st = rep["stages_ms"]
    assert set(st) == {"detect", "align", "embed", "match", "total"}
    assert st["total"] >= max(st["detect"], st["embed"])
    assert rep["meets_target"] == (m["overhead_ms"] <= rep["target_overhead_ms"])


# -- compare.py ------------------------------------------------------------------------------
def _result(path: Path, metrics: dict, dev: str = "board-a") -> Path:
    path.write_text(json.dumps({"schema": _common.SCHEMA, "kind": "models", "system": {"device_id": dev},
                                "metrics": metrics}))
    return path


def _m(v, unit="ms", better="lower"):
    return {"value": v, "unit": unit, "better": better}


@pytest.mark.parametrize("new,code", [
    ({"lat": _m(10.5), "ratio": _m(3.0, "x", "higher")}, 0),   # +5 %: noise
    ({"lat": _m(12.0), "ratio": _m(3.0, "x", "higher")}, 1),   # +20 % latency: regression
    ({"lat": _m(7.0), "ratio": _m(3.0, "x", "higher")}, 0),    # faster: improvement, not a failure
    ({"lat": _m(10.0), "ratio": _m(2.4, "x", "higher")}, 1),   # speed-up ratio dropped 20 %
    ({"other": _m(1.0)}, 2),                                   # nothing in common
])
def test_compare_flags_regressions(tmp_path, new, code):
    a = _result(tmp_path / "a.json", {"lat": _m(10.0), "ratio": _m(3.0, "x", "higher")})
    b = _result(tmp_path / "b.json", new, dev="board-b")
    p = _run("compare.py", str(a), str(b), "--tolerance", "0.15")
    assert p.returncode == code, p.stdout + p.stderr
    if code == 1:
        assert "REGRESSION" in p.stdout


def test_compare_small_absolute_changes_and_csv_and_dirs(tmp_path):
    a = _result(tmp_path / "a.json", {"tiny": _m(0.02), "lat": _m(10.0)})
    # 0.02 -> 0.03 ms is +50 % but below --min-abs-ms: not a regression
    (tmp_path / "b").mkdir()
    _result(tmp_path / "b" / "models.json", {"tiny": _m(0.03), "lat": _m(10.0)})
    assert _run("compare.py", str(a), str(tmp_path / "b")).returncode == 0
    # a per-board reference CSV works as the reference side
    ref = tmp_path / "ref.metrics.csv"
    _common.write_metrics_csv(ref, {"lat": _m(8.0)})
    p = _run("compare.py", str(ref), str(tmp_path / "b"), "--markdown", str(tmp_path / "diff.md"))
    assert p.returncode == 1 and "lat" in (tmp_path / "diff.md").read_text()
    assert _run("compare.py", str(ref), str(tmp_path / "b"), "--tolerance", "0.3").returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert _run("compare.py", str(bad), str(a)).returncode == 2


# -- helpers -----------------------------------------------------------------------------------
def test_device_id_and_thermal_state_are_safe():
    assert _common.sanitize("Ray's Pi 5 / lab #3") == "ray-s-pi-5-lab-3"
    assert _common.sanitize("***") == "unknown"
    did = _common.device_id()
    assert did == _common.sanitize(did)
    th = _common.thermal_state()  # a VM has no thermal zone: an empty dict, never an error
    assert isinstance(th, dict)
    assert _common.parse_threads("1-3,2") == [1, 2, 3]
