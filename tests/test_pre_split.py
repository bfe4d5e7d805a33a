"""Files written by nnx before the rooms split (issue 12) still load, and predict the same.

The fixtures in ``tests/fixtures/pre_split/`` were written once by the code as it was before
``nnx/mlflow_tracking.py``, ``nnx/data.py`` and ``nnx/mlflow_model.py`` were split
(``tests/fixtures/pre_split/make.py`` says how): a logged run's config, its trainer checkpoint,
its final weights snapshot and its logged pyfunc model, with the outputs the trained network
gave. Every test below loads one of them with today's code and compares outputs exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from nnx import experiment

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pre_split"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
X = np.array(EXPECTED["inputs"])
OUTPUTS = np.array(EXPECTED["outputs"])


def old_config() -> dict:
    """The logged config, run here without tracking and without writing checkpoints."""
    cfg = yaml.safe_load((FIXTURES / "config.yaml").read_text())
    cfg["tracking"] = {"name": "none"}
    cfg["trainer"]["checkpoint_dir"] = None
    return cfg


def test_old_config_and_checkpoint_rebuild_the_trained_trainer():
    trainer, ds, out_features = experiment.build(old_config())
    assert (ds.name, out_features) == ("xor", 1)
    meta = trainer.load_checkpoint(FIXTURES / "last.npz")
    assert (trainer.epoch, trainer.step) == (EXPECTED["epoch"], EXPECTED["step"])
    assert meta["optimizer"]["class"] == "Adam" and trainer.optimizer.iterations == 30
    np.testing.assert_array_equal(trainer.network.predict(X), OUTPUTS)


def test_old_checkpoint_resumes_through_the_config():
    cfg = old_config()
    cfg["trainer"]["resume"] = str(FIXTURES / "last.npz")
    cfg["trainer"]["epochs"] = EXPECTED["epoch"] + 2
    result = experiment.train(cfg)
    assert result["trainer"].epoch == EXPECTED["epoch"] + 2
    assert np.isfinite(result["metrics"]["objective"])


def test_old_weights_snapshot_loads():
    from nnx.mlflow_model import load_snapshot

    np.testing.assert_array_equal(load_snapshot(FIXTURES / "final.npz").predict(X), OUTPUTS)


def test_old_logged_model_folder_loads_without_mlflow():
    from nnx.mlflow_model import load_network

    network = load_network(FIXTURES / "model" / "data" / "network")
    np.testing.assert_array_equal(network.predict(X), OUTPUTS)


def test_old_logged_pyfunc_model_loads_through_mlflow():
    import mlflow

    text = (FIXTURES / "model" / "MLmodel").read_text()
    assert "loader_module: nnx.mlflow_model" in text
    model = mlflow.pyfunc.load_model(str(FIXTURES / "model"))
    np.testing.assert_array_equal(model.predict(X), OUTPUTS)
