"""edgelite batch on Ray Data: a local Ray instance (2 CPUs), started once for the module.

The Ray engine must give the same rows and the same errors table as the local
engine (run through the CLI here) on the same real photos and bad files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from edgelite.batch import TIMING_COLUMNS, BatchError, read_errors, read_output, run_batch  # noqa: E402
from test_batch import make_folder  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    # Ray's workers get no zoo (as on the nodes of a real cluster): the models they
    # run are the bytes the driver ships, the ones the manifest names.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"EDGELITE_CACHE_DIR": "/nonexistent/edgelite-cache"}})
    yield
    ray.shutdown()


def _strip(t):
    return t.drop_columns([c for c in TIMING_COLUMNS if c in t.column_names])


def test_ray_rows_equal_local_cli_rows(local_ray, tmp_path, zoo_models):
    folder = make_folder(tmp_path, orl_subjects=("s1",))
    local = tmp_path / "local"
    r = subprocess.run([sys.executable, "-m", "edgelite.cli", "batch", "embed", str(folder), "-o", str(local),
                        "--workers", "2", "--shard-size", "8", "-q"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    # inputs and output as file:// URIs: the path Ray and pyarrow resolve, no code change for s3:// or gs://
    out_uri = "file://" + str(tmp_path / "ray")
    res = run_batch("embed", ["file://" + str(folder)], out_uri, engine="ray", workers=2, progress=False)
    a, b = read_output(tmp_path / "ray"), read_output(local)
    assert a.schema.equals(b.schema)
    assert a.num_rows == b.num_rows == res.rows > 0
    assert _strip(a).equals(_strip(b))
    ea, eb = read_errors(tmp_path / "ray"), read_errors(local)
    assert ea.num_rows == res.errors >= 5
    assert ea.equals(eb), (ea.to_pylist(), eb.to_pylist())
    m = json.loads((tmp_path / "ray" / "_manifest.json").read_text())
    assert m["engine"] == "ray" and m["finished"] and m["models"] == json.loads(
        (local / "_manifest.json").read_text())["models"]
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path / "ray"))
    # the same run again: found complete, nothing redone; other settings: refused
    again = run_batch("embed", ["file://" + str(folder)], out_uri, engine="ray", workers=2, progress=False)
    assert again.shards_skipped == again.shards_total and again.rows == res.rows
    with pytest.raises(BatchError, match="score_threshold"):
        run_batch("embed", [folder], out_uri, engine="ray", score_threshold=0.9, progress=False)
    # never deletes a folder it did not write (here: the photos themselves)
    with pytest.raises(BatchError, match="no edgelite batch manifest"):
        run_batch("embed", [folder], folder, engine="ray", if_exists="overwrite", progress=False)
    assert (folder / "demo" / "Nick_Hague.jpg").is_file()
