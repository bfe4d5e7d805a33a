"""Networks of any shape (issue 13): shapes between layers, flatten and reshape, composite
blocks, buffers (state that is not trained), decay flags, and models as a list of layers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import test_plugins
from test_plugins import make_distribution

from nnx import checkpoint, experiment
from nnx.config import ConfigError
from nnx.data import Dataset
from nnx.network import Network
from nnx.network_files import load_network, load_snapshot, save_network, save_snapshot
from nnx.optimizers import SGD, AdamW
from nnx.registry import build
from nnx.run import compose
from nnx.run_metadata import flatten
from nnx.testing import check_component, check_module_gradients
from nnx.trainer import TrainConfig, Trainer

on_path = test_plugins.on_path  # the fixture: folders on sys.path for one test

DENSE = {"name": "dense", "units": 10}


# -- shapes ---------------------------------------------------------------------------------
def test_in_features_is_short_for_a_1d_in_shape():
    a = Network([{"name": "dense", "units": 2}], 3, rng=np.random.default_rng(0))
    b = Network([{"name": "dense", "units": 2}], in_shape=(3,), rng=np.random.default_rng(0))
    assert a.in_shape == b.in_shape == (3,) and a.in_features == 3
    assert np.array_equal(a.flat_params, b.flat_params)
    with pytest.raises(ValueError, match="give in_shape or in_features, not both"):
        Network(["relu"], 3, in_shape=(3,))


def test_dense_on_images_says_to_add_flatten():
    with pytest.raises(ValueError) as info:
        Network([DENSE], in_shape=(1, 28, 28))
    assert str(info.value) == ("layer 0 (dense): expects a 1-D sample shape (features,), got "
                               "(1, 28, 28); add a flatten layer before it")


def test_a_mismatch_between_layers_names_both_layers_and_shapes():
    with pytest.raises(ValueError) as info:
        Network([{"name": "reshape", "shape": [4, 16]}, DENSE], in_shape=(1, 8, 8))
    assert str(info.value) == ("layer 1 (dense): expects a 1-D sample shape (features,), got "
                               "(4, 16); add a flatten layer before it (after layer 0 (reshape), "
                               "whose output is (4, 16))")
    with pytest.raises(ValueError, match=r"layer 0 \(reshape\): cannot reshape a sample of "
                                         r"shape \(1, 8, 8\) \(64 values\) to \(5, -1\)"):
        Network([{"name": "reshape", "shape": [5, -1]}], in_shape=(1, 8, 8))


def test_input_of_the_wrong_shape_names_the_expected_one():
    net = Network(["flatten", DENSE], in_shape=(1, 8, 8), rng=np.random.default_rng(0))
    with pytest.raises(ValueError) as info:
        net.forward(np.zeros((5, 64)))
    assert str(info.value) == ("network input must be 4-D (n, 1, 8, 8), got shape (5, 64); "
                               "reshape a single sample with x.reshape(1, 1, 8, 8)")
    with pytest.raises(ValueError, match=r"expects input of shape \(n, 1, 8, 8\), got shape "
                                         r"\(5, 1, 8, 7\)"):
        net.forward(np.zeros((5, 1, 8, 7)))


def test_flatten_and_reshape_are_views_and_round_trip():
    x = np.arange(2 * 3 * 4, dtype=float).reshape(2, 1, 3, 4)
    net = Network(["flatten", {"name": "reshape", "shape": [3, -1]}], in_shape=(1, 3, 4))
    assert net.out_shape == (3, 4)
    y = net.forward(x)
    assert y.shape == (2, 3, 4) and np.array_equal(y.reshape(-1), x.reshape(-1))
    net.layers[0].propagate = True
    assert np.array_equal(net.backward(y), x)


def digits_network(seed=0):
    return Network(["flatten", {"name": "dense", "units": 32}, "relu",
                    {"name": "residual", "layers": [{"name": "dense", "units": 32}, "tanh"]},
                    DENSE], in_shape=(1, 8, 8), rng=np.random.default_rng(seed))


def test_summary_shows_every_output_shape_and_indents_blocks():
    lines = digits_network().summary().splitlines()
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[2:-2]]
    assert [(r[0], r[-2], r[-1]) for r in rows] == [
        ("0", "(n, 64)", "0"), ("1", "(n, 32)", "2,080"), ("2", "(n, 32)", "0"),
        ("3", "(n, 32)", "1,056"), ("3.0", "(n, 32)", "1,056"), ("3.1", "(n, 32)", "0"),
        ("4", "(n, 10)", "330")]
    assert lines[4 + 2].startswith("3.0    Dense(")  # indented under its block
    assert lines[-1] == "input (n, 1, 8, 8), 3,466 parameters, float64"


def test_a_4d_network_trains_on_digits():
    ds = build("datasets", "digits").load(np.random.default_rng(0)).shaped()
    assert ds.x_train.shape[1:] == (1, 8, 8) == ds.sample_shape
    net = digits_network()
    loss = build("losses", "softmax_cross_entropy")
    trainer = Trainer(net, loss, build("optimizers", "adam", lr=0.01),
                      config=TrainConfig(epochs=5, batch_size=32, progress=False),
                      rng=np.random.default_rng(1))
    trainer.fit(ds.x_train, ds.y_train)
    assert trainer.evaluate(ds.x_test, ds.y_test)["val_accuracy"] > 0.9


# -- composite blocks --------------------------------------------------------------------------
def test_gradients_pass_through_blocks():
    net = Network([{"name": "sequential", "layers": [{"name": "dense", "units": 3}, "tanh"]},
                   {"name": "residual", "layers": [{"name": "dense", "units": 3}, "sigmoid",
                                                   {"name": "dense", "units": 3}]}],
                  in_shape=(4,), rng=np.random.default_rng(0))
    assert list(net.named_params()) == ["0.0.W", "0.0.b", "1.0.W", "1.0.b", "1.2.W", "1.2.b"]
    check_module_gradients(net, np.random.default_rng(1).normal(size=(5, 4)))


def test_a_wrong_gradient_in_a_block_is_named_by_its_layer_and_key(center):
    net = Network([{"name": "residual", "layers": [{"name": "dense", "units": 3}, "center_wrong"]}],
                  in_shape=(3,), rng=np.random.default_rng(0))
    with pytest.raises(AssertionError, match=r"^net: layer 0\.1 \(nnx-test-stateful:center_wrong\): dL/dg: analytic"):
        check_module_gradients(net, np.random.default_rng(1).normal(size=(5, 3)), name="net")


def test_a_residual_block_that_changes_the_shape_names_the_block():
    with pytest.raises(ValueError) as info:
        Network(["relu", {"name": "residual", "layers": [{"name": "dense", "units": 5}]}],
                in_shape=(4,))
    assert str(info.value).startswith(
        "layer 1 (residual): its layers map (4,) to (5,); a residual block must keep the shape, "
        "since its input is added to their output")


def test_block_params_live_in_the_one_flat_buffer():
    net = digits_network()
    inner = net.layers[3].layers[0].params["W"]
    assert np.shares_memory(inner, net.flat_params)
    assert net.layers[3].params["0.W"] is inner


# -- buffers -----------------------------------------------------------------------------------
STATEFUL = '''
    """A layer with buffers, for the tests: y = (x - mean) * g + b, g and b learnt, not decayed.

    Training: mean is the batch mean (per element of a sample), and the buffer running_mean
    follows it (running_mean = 0.9 running_mean + 0.1 batch mean; count += 1). Eval: mean is
    running_mean. dL/dx = g * (grad - mean of grad over the batch) in training, g * grad in eval.
    """
    import numpy as np

    from nnx.module import Module


    class Center(Module):
        def __init__(self, momentum: float = 0.1):
            super().__init__()
            self.momentum = float(momentum)
            self._config = {"momentum": self.momentum}

        def build(self, in_shape, rng, dtype):
            self.params = {"g": np.ones(in_shape, dtype), "b": np.zeros(in_shape, dtype)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
            self.decay = {"g": False, "b": False}
            self.buffers = {"running_mean": np.zeros(in_shape, dtype), "count": np.zeros(1, dtype)}
            return tuple(in_shape)

        def forward(self, x):
            if self.training:
                mean = x.mean(axis=0)
                running = self.buffers["running_mean"]
                running[...] = (1 - self.momentum) * running + self.momentum * mean
                self.buffers["count"][...] += 1
            else:
                mean = self.buffers["running_mean"]
            self._centred = x - mean
            return self._centred * self.params["g"] + self.params["b"]

        def backward(self, grad):
            self.grads["g"][...] = (grad * self._centred).sum(axis=0)
            self.grads["b"][...] = grad.sum(axis=0)
            g = grad * self.params["g"]
            return g - g.mean(axis=0) if self.training else g


    class WrongGrad(Center):
        """Center with dL/dg doubled: what the kit must catch."""

        def backward(self, grad):
            dx = super().backward(grad)
            self.grads["g"][...] *= 2
            return dx
'''


@pytest.fixture
def center(tmp_path, on_path):
    make_distribution(tmp_path, "nnx-test-stateful", {"nnx.layers": {"center": "stateful:Center",
                                                    "center_wrong": "stateful:WrongGrad"}},
                      {"stateful.py": STATEFUL})
    on_path(tmp_path)
    return "center"


def stateful_trainer(seed=0, **config):
    net = Network(["flatten", {"name": "dense", "units": 6}, "center", {"name": "dense",
                                                                       "units": 3}],
                  in_shape=(2, 2), rng=np.random.default_rng(seed))
    return Trainer(net, build("losses", "softmax_cross_entropy"),
                   build("optimizers", "adamw", lr=0.01),
                   config=TrainConfig(batch_size=8, progress=False, **config),
                   rng=np.random.default_rng(seed + 1))


def xy(seed=0, n=40):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, 2, 2)) + 3.0, g.integers(0, 3, n)


def test_a_layer_with_buffers_passes_the_kit(center):
    check_component("layers", center)


def test_buffers_are_kept_beside_the_params_and_never_stepped(center):
    trainer = stateful_trainer(epochs=2)
    net = trainer.network
    assert list(net.named_buffers()) == ["2.running_mean", "2.count"]
    assert net.flat_buffers.size == 7 and net.n_params == 30 + 12 + 21
    trainer.fit(*xy())
    assert net.named_buffers()["2.count"][0] == 10  # 5 batches x 2 epochs, in place
    assert np.all(net.named_buffers()["2.running_mean"] != 0)
    before = net.flat_buffers.copy()
    net.predict(xy(1)[0])  # eval mode: the buffers are used, not changed
    assert np.array_equal(net.flat_buffers, before)
    assert net.decay["flat"].sum() == 24 + 18  # dense weights only: biases, g, b not decayed


def test_buffers_are_restored_bit_identically(center, tmp_path):
    trainer = stateful_trainer(epochs=2, checkpoint_dir=str(tmp_path / "ck"))
    trainer.fit(*xy())
    net = trainer.network
    fresh = stateful_trainer(seed=5, epochs=3)
    fresh.load_checkpoint(tmp_path / "ck" / "last.npz")
    assert np.array_equal(fresh.network.flat_buffers, net.flat_buffers)
    for loaded in (load_snapshot(save_snapshot(net, tmp_path / "w.npz")),
                   load_network(save_network(net, tmp_path / "model"))):
        assert loaded.in_shape == (2, 2)
        assert np.array_equal(loaded.flat_buffers, net.flat_buffers)
        assert np.array_equal(loaded.flat_params, net.flat_params)
        assert np.array_equal(loaded.predict(xy(1)[0]), net.predict(xy(1)[0]))
    meta, arrays = checkpoint.read(tmp_path / "ck" / "last.npz")
    assert meta["in_shape"] == [2, 2] and arrays["buffers"].shape == (7,)


# -- decay flags -------------------------------------------------------------------------------
def test_biases_are_not_decayed_unless_decay_all():
    def step(opt):
        net = Network([{"name": "dense", "units": 2, "bias_initializer": "normal"}], 3,
                      rng=np.random.default_rng(0))
        before = {k: v.copy() for k, v in net.named_params().items()}
        net.flat_grads[...] = 0.0  # zero gradients: only decay moves a parameter
        opt.step(net.params, net.grads, net.decay)
        return before, net.named_params()

    before, after = step(AdamW(lr=0.1, weight_decay=0.5))
    assert np.array_equal(after["0.W"], before["0.W"] * (1 - 0.1 * 0.5))
    assert np.array_equal(after["0.b"], before["0.b"])
    before, after = step(AdamW(lr=0.1, weight_decay=0.5, decay_all=True))
    assert np.array_equal(after["0.b"], before["0.b"] * (1 - 0.1 * 0.5))
    before, after = step(SGD(lr=1.0, weight_decay=0.25))  # L2: g = wd * p where decayed
    assert np.array_equal(after["0.W"], before["0.W"] - 0.25 * before["0.W"])
    assert np.array_equal(after["0.b"], before["0.b"])


def test_without_a_mask_everything_is_decayed_as_before():
    p = {"p": np.ones(3)}
    AdamW(lr=0.1, weight_decay=0.5).step(p, {"p": np.zeros(3)})
    assert np.array_equal(p["p"], np.full(3, 1 - 0.05))


# -- models as a list of layers ----------------------------------------------------------------
def test_a_sequential_model_trains_from_the_config():
    layers = "model.layers=[{name: dense, units: 16}, relu, {name: dense, units: 2}]"
    cfg = compose(["model=sequential", layers, "dataset=moons", "tracking=none",
                   "trainer.epochs=10"])
    result = experiment.train(cfg)
    assert result["trainer"].network.n_params == 2 * 16 + 16 + 16 * 2 + 2
    assert result["metrics"]["test_accuracy"] > 0.7


def test_a_sequential_model_on_images_gets_shaped_input():
    cfg = compose(["model=sequential", "dataset=digits", "tracking=none", "trainer.epochs=1",
                   "model.layers=[flatten, {name: dense, units: 10}]"])
    trainer, ds, _ = experiment.build(cfg)
    assert trainer.network.in_shape == (1, 8, 8) and ds.x_train.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("layers,message", [
    ("[{name: dense, unit: 16}, relu, {name: dense, units: 2}]",
     ("model.layers.0.unit: 'dense' takes no argument 'unit'; did you mean 'units'? Valid: "
      "units, bias, initializer, bias_initializer")),
    ("[{name: dense, units: 16}, rleu, {name: dense, units: 2}]",
     "model.layers.1: unknown layer or activation 'rleu'. Did you mean 'relu'? Valid names: "),
    ("[{name: residual, layers: [{name: dense, units: 2, bais: false}]}]",
     "model.layers.0.layers.0.bais: 'dense' takes no argument 'bais'; did you mean 'bias'?"),
    ("[{name: dense, units: 0}]", "model.layers.0.units: units must be a positive integer"),
    ("[{name: dense, units: 16}, relu, {name: dense, units: 3}]",
     ("model.layers: the network's output is (n, 3) but dataset 'moons' with this loss needs "
      "(n, 2); end with a dense layer of 2 units (e.g. model.layers.2.units=2")),
    ("[{name: residual, layers: [{name: dense, units: 3}]}, {name: dense, units: 2}]",
     "model.layers: layer 0 (residual): its layers map (2,) to (3,)"),
])
def test_bad_layer_lists_fail_before_training(layers, message):
    cfg = compose(["model=sequential", f"model.layers={layers}", "tracking=none"])
    with pytest.raises(ConfigError) as info:
        experiment.build(cfg)
    assert str(info.value).startswith(message)


def test_mlp_with_layers_says_to_use_sequential():
    with pytest.raises(ConfigError, match="model.layers: the mlp model is built from "
                                          "model.hidden; for a list of layers use "
                                          "model=sequential"):
        experiment.build(compose(["+model.layers=[relu]", "tracking=none"]))


def test_a_sweep_over_one_layer_argument(nnx_run):
    done = nnx_run(["-m", "model=sequential", "model.layers.0.units=16,32", "tracking=none",
                    "trainer.epochs=1"])
    assert done.returncode == 0, done.stderr
    counts = re.findall(r"([\d,]+) parameters", done.stdout + done.stderr)
    assert counts == ["82", "162"]  # 2-16-2 and 2-32-2


def test_layer_lists_are_params_item_by_item():
    params = flatten({"model": {"name": "sequential", "layers": [{"name": "dense", "units": 16},
                                                                 "relu"]}})
    assert params["model.layers.0.units"] == 16 and params["model.layers.1"] == "relu"
    assert params["model.layers"] == [{"name": "dense", "units": 16}, "relu"]


def test_a_dataset_says_its_sample_shape():
    shapes = {name: build("datasets", name).load(np.random.default_rng(0)).sample_shape
              for name in ("digits", "moons", "circles", "spirals", "xor", "tutorial")}
    assert shapes == {"digits": (1, 8, 8), "moons": (2,), "circles": (2,), "spirals": (2,),
                      "xor": (2,), "tutorial": (3,)}
    with pytest.raises(ValueError, match=r"sample_shape \(3, 3\) does not fit x_train of shape"):
        Dataset("d", np.zeros((4, 8)), np.zeros(4, int), n_classes=2, sample_shape=(3, 3))


# -- models that say what they need ------------------------------------------------------------
def test_a_saved_network_lists_the_plugins_it_needs(center, tmp_path):
    import json

    net = stateful_trainer().network
    folder = save_network(net, tmp_path / "model")
    meta = json.loads((folder / "network.json").read_text())
    assert meta["requirements"] == {"nnx-test-stateful": "0.1"}
    meta["requirements"] = {"nnx-missing-plugin": "1.2"}  # as where that plugin is absent
    (folder / "network.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"made with components of nnx-missing-plugin 1\.2, "
                                         r"which is not installed; install it with: pip install "
                                         r"nnx-missing-plugin==1\.2"):
        load_network(folder)


def test_a_tracked_sequential_run_records_the_layers_and_logs_a_shaped_model(store, tmp_path):
    import mlflow
    from test_tracking import only_run

    layers = ("model.layers=[flatten, {name: dense, units: 16}, relu, {name: residual, layers: "
              "[{name: dense, units: 16}, tanh]}, {name: dense, units: 10}]")
    cfg = compose(["model=sequential", layers, "dataset=digits", "trainer.epochs=2",
                   f"tracking.uri={store}", "tracking.plots=false", "name=digits_seq"])
    result = experiment.train(cfg)
    run = only_run(store, "digits_seq")
    params = run.data.params
    assert params["model.layers.1.units"] == "16" and params["model.layers.0"] == "flatten"
    assert params["model.layers.3.layers"] == '[{"name": "dense", "units": 16}, "tanh"]'
    note = run.data.tags["mlflow.note.content"]
    assert "(n, 64)" in note and "3.0" in note and "input (n, 1, 8, 8)" in note
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    x = result["dataset"].x_test  # (n, 1, 8, 8)
    expected = result["trainer"].network.predict(x)
    np.testing.assert_array_equal(model.predict(x), expected)


@pytest.mark.parametrize("pattern", ["stretches", "alternating"])  # slices, or a factor array
def test_a_decay_mask_decays_exactly_its_elements(pattern):
    mask = np.zeros(300, bool)
    if pattern == "stretches":
        mask[10:100] = mask[150:290] = True
    else:
        mask[::2] = True  # 150 stretches: past MAX_RUNS
    for opt, expected in ((AdamW(lr=0.1, weight_decay=0.5), lambda p: p * np.float32(0.95)),
                          (SGD(lr=1.0, weight_decay=0.25), lambda p: p - np.float32(0.25) * p)):
        p = np.random.default_rng(0).normal(size=300).astype(np.float32)
        before = p.copy()
        opt.step({"flat": p}, {"flat": np.zeros(300, np.float32)}, {"flat": mask})
        np.testing.assert_array_equal(p[~mask], before[~mask])
        np.testing.assert_allclose(p[mask], expected(before[mask]), rtol=1e-6)


def test_compare_shows_a_varied_layer_argument(store):
    from nnx.compare import runs_table

    for units in (8, 16):
        experiment.train(compose(["model=sequential", f"model.layers.0.units={units}",
                                  "trainer.epochs=1", f"tracking.uri={store}", "name=seq_cmp",
                                  "tracking.plots=false", "tracking.log_model=false"]))
    table = runs_table(experiment="seq_cmp", uri=store)
    assert "model.layers.0.units" in table.attrs["varied"]
    assert sorted(table["model.layers.0.units"]) == ["16", "8"]


def test_early_stopping_restores_the_best_epochs_buffers_with_its_weights(tmp_path):
    """Batch norm's running statistics belong to the weights they were trained with: early
    stopping restores both from the best epoch, and a checkpoint keeps both."""
    from nnx.trainer import EarlyStopping

    seen = []  # what the network held at the end of each epoch

    class Record(EarlyStopping):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append((trainer.network.flat_params.copy(),
                                trainer.network.flat_buffers.copy()))
            super().on_epoch_end(trainer, epoch, logs)

    cfg = compose(["model=sequential", "dataset=moons", "tracking=none", "trainer.epochs=30",
                   "optimizer.lr=0.05", "trainer.val_split=0.3",
                   ("model.layers=[{name: dense, units: 8}, batch_norm, relu, "
                    "{name: dense, units: 2}]")])
    trainer, ds, out_features = experiment.build(cfg)
    stopping = Record("val_loss", patience=2)
    trainer.callbacks.append(stopping)
    trainer.fit(*experiment.fit_data(cfg, ds, trainer.loss, out_features))
    assert trainer.stopped_early and stopping.best_epoch < trainer.epoch - 1
    weights, buffers = seen[stopping.best_epoch]
    assert buffers.size and np.array_equal(trainer.network.flat_buffers, buffers)
    assert np.array_equal(trainer.network.flat_params, weights)
    assert not np.array_equal(seen[-1][1], buffers)  # later epochs had moved them
    path = checkpoint.save(tmp_path / "last.npz", trainer, rngs=trainer.rngs)
    _, arrays = checkpoint.read(path)
    assert any(k.endswith("/best_buffers") for k in arrays)
    again, _, _ = experiment.build(cfg)  # and a resumed run gets them back
    again.callbacks.append(Record("val_loss", patience=2))  # by position and class
    again.load_checkpoint(path)
    assert np.array_equal(again.callbacks[-1].best_buffers, buffers)
