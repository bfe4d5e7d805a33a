"""What keeps a tracked run cheap, and that nothing is lost by it: ``tracking.plots`` picks the
pictures, the tutorial preset skips the pictures and the model (and says so), and the first
import of mlflow is kept out of the garbage collector's way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_tracking import artifacts, client_for, only_run  # the tracking tests' helpers

from nnx import experiment
from nnx.config import ConfigError
from nnx.run import compose

ROOT = Path(__file__).resolve().parent.parent


def files_of(uri: str, experiment_name: str) -> tuple[str, set[str]]:
    """(status, every artifact path) of the one run of ``experiment_name``."""
    run = only_run(uri, experiment_name)
    return run.info.status, artifacts(client_for(uri), run.info.run_id)


def test_plots_setting_is_true_false_or_a_list_of_names():
    from nnx.tracking_settings import PLOTS, check_settings

    assert check_settings({"plots": True})["plots"] == PLOTS
    assert check_settings({"plots": False})["plots"] == ()
    assert check_settings({})["plots"] == PLOTS  # the default draws every one that applies
    # drawn in PLOTS order, whatever the order given
    assert check_settings({"plots": ["confusion", "curves"]})["plots"] == ("curves", "confusion")
    assert check_settings({"plots": []})["plots"] == ()
    with pytest.raises(ConfigError, match="tracking.plots: unknown plot 'loss'; valid: curves, "
                                          "histograms, confusion, boundary"):
        check_settings({"plots": ["curves", "loss"]})
    with pytest.raises(ConfigError, match="tracking.plots: expected true or false, or a list"):
        check_settings({"plots": "curves"})


def test_only_the_chosen_plots_are_logged(store):
    cfg = compose(["dataset=moons", "dataset.n_samples=64", "dataset.n_test=32",
                    "model.hidden=[4]", "trainer.epochs=4", "trainer.batch_size=16",
                    f"tracking.uri={store}", "tracking.plots=[boundary,curves]",
                    "tracking.histograms_every=2", "tracking.log_model=false", "name=picked"])
    experiment.train(cfg)
    status, files = files_of(store, "picked")
    assert status == "FINISHED"
    plots = {f for f in files if f.startswith("plots/")}
    # no histograms at all: histograms_every draws only when histograms are among the plots
    assert plots == {"plots/learning_curves.png", "plots/decision_boundary.png"}, plots
    assert "weights/final.npz" in files and not any(f.startswith("model") for f in files)


def test_tutorial_preset_skips_plots_and_model_unless_asked(store):
    tracking = compose(["experiment=tutorial"])["tracking"]
    assert tracking["plots"] is False and tracking["log_model"] is False
    asked = compose(["experiment=tutorial", "tracking.plots=true", "tracking.log_model=true"])
    assert asked["tracking"]["plots"] is True and asked["tracking"]["log_model"] is True
    # every other preset keeps the defaults: pictures and model
    for preset in ("xor", "spirals", "digits_mlp"):
        other = compose([f"experiment={preset}"])["tracking"]
        assert other["plots"] is True and other["log_model"] is True, preset
    # tracking=none with the preset's tracking keys still composes and trains
    assert experiment.train(compose(["experiment=tutorial", "tracking=none",
                                      "trainer.epochs=3"]))["trainer"].epoch == 3

    cfg = compose(["experiment=tutorial", "trainer.epochs=30", f"tracking.uri={store}"])
    experiment.train(cfg)
    status, files = files_of(store, "tutorial")
    assert status == "FINISHED"
    assert {"config.yaml", "weights/final.npz"} <= files, files
    assert not [f for f in files if f.startswith(("plots/", "model"))], files


def test_first_store_opened_leaves_mlflow_frozen_and_the_collector_on(store):
    """The objects of mlflow's import are frozen (skipped by later collections), once, and the
    collector is running again afterwards; a collector turned off by the caller stays off."""
    code = f"""
import gc
from nnx.store import open_store
before = gc.get_freeze_count()
open_store({store!r})
frozen = gc.get_freeze_count()
assert gc.isenabled(), "the collector was left off"
assert frozen - before > 100_000, (before, frozen)
open_store({store!r})
assert gc.get_freeze_count() <= frozen, "froze a second time"  # frozen objects may die
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    off = ("import gc\ngc.disable()\nfrom nnx.store import open_store\n"
           f"open_store({store!r})\nassert not gc.isenabled()\nassert gc.get_freeze_count() == 0\n")
    done = subprocess.run([sys.executable, "-c", off], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
