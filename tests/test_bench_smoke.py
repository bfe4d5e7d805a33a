"""The speed benchmark runs end to end (``bench.py --quick``) and reports every contender.

Only the report's shape is checked: timings are the benchmark's business, never a test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "experiments" / "benchmarks" / "bench.py"


@pytest.mark.slow
@pytest.mark.needs_fashion_mnist  # the benchmark trains on the real dataset
def test_quick_bench_reports_every_contender(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--skip-scaling", "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads((out / "bench.json").read_text())
    contenders = doc["contenders"]
    assert set(contenders) >= {"floor", "nnx_trainer", "nnx_loop", "nnx_trainer_mlflow",
                               "nnx_run", "sklearn", "torch_adam", "torch_fused_adam"}
    assert len(contenders["nnx_trainer_mlflow"]["epoch_seconds"]) == doc["meta"]["epochs"]
    for key in ("floor", "nnx_trainer", "nnx_loop", "sklearn"):
        assert len(contenders[key]["wall"]) == doc["meta"]["epochs"], key
        assert "growth_mib" in contenders[key]["memory"], key
    assert contenders["nnx_run"]["epoch_seconds"], contenders["nnx_run"]
    for key in ("torch_adam", "torch_fused_adam"):  # measured, or skipped with a reason
        assert contenders[key].get("skipped") or contenders[key]["wall"], key
    assert set(doc["tutorial"]) == {"tutorial_numpy", "tutorial_nnx", "tutorial_run_none",
                                    "tutorial_run_tracking"}
    assert doc["tutorial"]["tutorial_nnx"]["max_abs_diff_vs_numpy"] < 1e-3
    assert doc["profile"]["parts"] and doc["targets"]
    assert doc["meta"]["more_than_one_thread"] == []
    assert "## Targets" in (out / "bench.md").read_text()
    assert not (out / "scaling.png").exists()  # --skip-scaling
    cnn = doc["cnn"]  # the CNN section: nnx and its floor always, PyTorch measured or skipped
    assert {"nnx", "floor"} <= set(cnn["summary"]["median_step_s"]["cpu"])
    assert ("torch" in cnn["labels"]) != bool(cnn.get("torch_note"))
    assert cnn["breakdown"]["rows"]["max pool (forward + backward)"] > 0
    assert {t["target"] for t in cnn["targets"]} >= {
        "nnx <= 1.6x its own floor (the step's matrix products alone)", "peak memory stated"}
    assert "## CNN (issue 14)" in (out / "bench.md").read_text()
