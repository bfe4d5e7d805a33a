"""Every preset gives the same metrics for seed 0 as before the shapes change (issue 13).

``fixtures/preset_metrics.json`` was recorded with the code from before tensors flowed between
layers (``python tests/test_same_numbers.py`` rewrites it; do that only for a change that is
meant to move the numbers, and say so in its commit; ``--new`` records a new preset alone). ``digits_sequential``, a preset that
issue 13 added, was recorded when it was added. Each preset trains two short epochs
(``debug=default``) with an explicit ``trainer.val_split=0.0``, so that a change of that
default elsewhere does not move them; Fashion-MNIST presets read the small IDX files of
``conftest.small_fashion_dir`` (300 training, 100 test images, written by the tests).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "preset_metrics.json"
CONF = HERE.parent / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TIMINGS = {"samples_per_second"}
SHRINK = ["debug=default", "tracking=none", "trainer.val_split=0.0", "trainer.progress=false",
          "objective=loss", "trainer.early_stopping.patience=0"]  # no validation: nothing to monitor
# What must not move: the test set's and the training set's metrics. With val_split=0 the
# fixture's val_* and objective were the test set's (the old meaning of 0); today 0 means no
# validation set, so they are not compared (issue 16 changed that on purpose).
# Gradient norms are left out: they were logged after the optimizer used the gradient buffer
# as scratch (the update's norm, under Adam) until issue 20 took them before the step.
COMPARED = ("test_", "loss", "accuracy", "rmse", "r2", "lr", "layer")
IGNORED = ("grad_norm",)


def is_fashion(preset: str) -> bool:
    return "override /dataset: fashion_mnist\n" in (CONF / "experiment" / f"{preset}.yaml").read_text()


def preset_metrics(preset: str, fashion_dir: Path) -> dict[str, float]:
    """The metrics of a short seed-0 run of ``preset`` (timings left out: they vary)."""
    from nnx import experiment
    from nnx.run import compose

    overrides = [f"experiment={preset}", *SHRINK]
    if is_fashion(preset):
        overrides += [f"dataset.data_dir={fashion_dir}", "dataset.download=false"]
    logs = experiment.train(compose(overrides))["metrics"]
    return {k: float(v) for k, v in sorted(logs.items())
            if k not in TIMINGS and not k.endswith("_seconds") and isinstance(v, (int, float))}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_gives_the_recorded_metrics(preset, small_fashion_dir):
    recorded = json.loads(FIXTURE.read_text())
    assert preset in recorded, f"no recorded metrics for {preset}: record them before changing it"
    now = preset_metrics(preset, small_fashion_dir)
    wanted = {k: v for k, v in recorded[preset].items()
              if k.startswith(COMPARED) and not k.endswith(IGNORED)}
    assert any(k.startswith("test_") for k in wanted), f"{preset}: no test metric recorded"
    assert set(wanted) <= set(now), sorted(set(wanted) - set(now))
    for key, value in wanted.items():
        assert math.isclose(now[key], value, rel_tol=1e-12, abs_tol=1e-12), (preset, key, now[key],
                                                                               value)


if __name__ == "__main__":  # record the fixture (see the module docstring)
    import tempfile

    sys.path.insert(0, str(HERE))
    from idx_files import small_fashion

    # --new: record only the presets the fixture does not hold yet (a preset just added),
    # leaving every recorded number as it is.
    out = json.loads(FIXTURE.read_text()) if "--new" in sys.argv[1:] else {}
    with tempfile.TemporaryDirectory() as tmp:
        small_fashion(Path(tmp), n_train=300, n_test=100)
        added = {p: preset_metrics(p, Path(tmp)) for p in PRESETS if p not in out}
    out.update(added)
    FIXTURE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}: {', '.join(added)}")
