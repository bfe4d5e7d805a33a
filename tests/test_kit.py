"""The conformance kit (nnx.testing) cannot be fooled: what it must fail, what it must pass, and
its checks of returned arrays and datasets run over every registered name (so an installed
plugin is covered with no edit; tests/test_components.py runs the rest of the kit).

The plugins are real distributions on sys.path (dist-info folders, as test_plugins.py builds
them); the smaller cases are classes handed to ``check_component`` directly.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import test_plugins
from idx_files import small_fashion  # four tiny IDX files, written by the test
from test_plugins import make_distribution

from nnx.data import Dataset, DatasetSource
from nnx.losses import MeanSquaredError
from nnx.registry import registry
from nnx.testing import (
    ComponentUnavailable,
    assert_close,
    assert_finite,
    check_component,
    check_returned_arrays,
)

on_path = test_plugins.on_path  # the fixture: folders on sys.path for one test, then forgotten
OWNED = [(kind, name) for kind in ("activations", "layers") for name in registry(kind).names()]
DATASETS = registry("datasets").names()


# -- over every registered name ------------------------------------------------------------
@pytest.mark.parametrize("kind,name", OWNED, ids=[f"{k}:{n}" for k, n in OWNED])
def test_returned_arrays_belong_to_the_caller(kind, name):
    # forward, backward, then both again with other inputs: the first results are unchanged.
    check_returned_arrays(kind, name)


def no_download(name) -> dict:
    """Constructor arguments that keep a dataset source from downloading (tests never do)."""
    parameters = inspect.signature(registry("datasets").get(name)).parameters
    return {"download": False} if "download" in parameters else {}


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_conformance(name):
    try:
        check_component("datasets", name, **no_download(name))
    except ComponentUnavailable as error:
        pytest.skip(str(error))


def test_fashion_mnist_conformance_on_small_files(tmp_path):
    # The real parser and loader on four tiny IDX files, so it is checked on every machine.
    small_fashion(tmp_path)
    check_component("datasets", "fashion_mnist", data_dir=str(tmp_path), download=False)


def test_a_dataset_without_its_files_is_unavailable_not_failed(tmp_path):
    with pytest.raises(ComponentUnavailable, match="dataset 'fashion_mnist': its files are "
                                                   "missing: Fashion-MNIST not found"):
        check_component("datasets", "fashion_mnist", data_dir=str(tmp_path), download=False)

FOOLS = '''
    """Components that look right to a careless kit; each is wrong in one way."""
    import numpy as np

    from nnx.activations import Activation
    from nnx.initializers import Initializer
    from nnx.losses import Loss


    class NanBackward(Activation):
        """y = 2 x; dL/dx = 2 g, except for one NaN."""

        def forward(self, x):
            return 2 * x

        def backward(self, grad):
            dx = 2 * grad
            dx[1, 2] = np.nan
            return dx


    class InfForward(Activation):
        """y = x, but inf where x > 1 (an overflow)."""

        def forward(self, x):
            return np.where(x > 1, np.inf, x)

        def backward(self, grad):
            return grad.copy()


    class ReusedBuffer(Activation):
        """y = x written into a buffer kept between calls (what ReLU used to do)."""

        _y = None

        def forward(self, x):
            if self._y is None or self._y.shape != x.shape or self._y.dtype != x.dtype:
                self._y = np.empty_like(x)
            np.multiply(x, 1.0, out=self._y)
            return self._y

        def backward(self, grad):
            return grad * 1.0


    class NanGradientLoss(Loss):
        """L = mean((p - t)**2); its gradient hides a NaN."""

        def forward(self, pred, target):
            self._check(pred, target)
            self._d = pred - target
            return float(np.mean(self._d**2))

        def backward(self):
            g = 2 * self._d / self._d.size
            g[0, 1] = np.nan
            return g


    class OwnSeed(Initializer):
        """N(0, 1) from a generator it seeds itself: every network starts the same."""

        def draw(self, fan_in, fan_out, shape, rng):
            return np.random.default_rng(1234).normal(size=shape)


    class GlobalState(Initializer):
        """N(0, 1) from NumPy's global state: no seed reproduces it."""

        def draw(self, fan_in, fan_out, shape, rng):
            return np.random.normal(size=shape)
'''
KL = '''
    """A correct loss on probabilities: the kit must pass it."""
    import numpy as np

    from nnx.losses import Loss


    class KLDivergence(Loss):
        """L = mean over the batch of sum_c t_c log(t_c / p_c); dL/dp = -t / p / n.

        On probabilities p (n, C), e.g. from a softmax output; targets are probability rows.
        """

        targets = ("probabilities",)
        inputs = "probabilities"
        input_range = (0.0, 1.0)

        def forward(self, pred, target):
            self._check(pred, target)
            self._p, self._t = pred, target
            return float(np.sum(target * np.log(target / pred)) / len(pred))

        def backward(self):
            return -self._t / self._p / len(self._p)
'''


@pytest.fixture(scope="module")
def kit_plugins(tmp_path_factory):
    """Two distributions: nnx-kit-fools (each component wrong once) and nnx-kit-kl (correct)."""
    root = tmp_path_factory.mktemp("kit-site")
    make_distribution(root, "nnx-kit-fools", {
        "nnx.activations": {"nan_backward": "nnx_kit_fools:NanBackward",
                            "inf_forward": "nnx_kit_fools:InfForward",
                            "reused_buffer": "nnx_kit_fools:ReusedBuffer"},
        "nnx.losses": {"nan_gradient_loss": "nnx_kit_fools:NanGradientLoss"},
        "nnx.initializers": {"own_seed": "nnx_kit_fools:OwnSeed",
                             "global_state": "nnx_kit_fools:GlobalState"},
    }, {"nnx_kit_fools.py": FOOLS})
    make_distribution(root, "nnx-kit-kl",
                      {"nnx.losses": {"kl_divergence": "nnx_kit_kl:KLDivergence"}},
                      {"nnx_kit_kl.py": KL})
    return root


@pytest.fixture
def installed(kit_plugins, on_path):
    on_path(kit_plugins)


# -- NaN and inf ---------------------------------------------------------------------------
def test_assert_close_never_matches_nan():
    with pytest.raises(AssertionError, match=r"dL/dx: analytic gradient is nan at \(1,\)"):
        assert_close(np.array([1.0, np.nan]), np.array([1.0, np.nan]), "dL/dx")
    with pytest.raises(AssertionError, match=r"numerical gradient .* is inf at \(0, 1\)"):
        assert_close(np.ones((2, 2)), np.array([[1.0, np.inf], [1.0, 1.0]]), "dL/dW")
    with pytest.raises(AssertionError, match=r"^loss is nan \(1 of 1 entries not finite\)$"):
        assert_finite(np.float64("nan"), "loss")


def test_a_backward_that_returns_nan_fails_naming_it(installed):
    with pytest.raises(AssertionError) as info:
        check_component("activations", "nan_backward")
    assert str(info.value) == ("activation 'nan_backward': dL/dx: analytic gradient is nan at "
                               "(1, 2) (1 of 20 entries not finite)")


def test_an_infinite_output_fails_naming_it(installed):
    with pytest.raises(AssertionError, match=r"^activation 'inf_forward': output is inf at "
                                             r"\(\d, \d\) \(\d+ of 20 entries not finite\)$"):
        check_component("activations", "inf_forward")


def test_a_loss_gradient_with_nan_fails_naming_it(installed):
    with pytest.raises(AssertionError, match=r"^loss 'nan_gradient_loss' with values targets: "
                                             r"dL/dpred: analytic gradient is nan at \(0, 1\)"):
        check_component("losses", "nan_gradient_loss")


# -- returned arrays -------------------------------------------------------------------------
def test_a_result_in_a_reused_buffer_fails(installed):
    with pytest.raises(AssertionError, match=r"^activation 'reused_buffer' \(training mode\): "
                                             r"the output of forward was changed by a later "
                                             r"forward/backward; returned arrays belong to the "
                                             r"caller.*first change at \(0, 0\)"):
        check_component("activations", "reused_buffer")


# -- initializers ----------------------------------------------------------------------------
def test_an_initializer_that_seeds_its_own_generator_fails(installed):
    with pytest.raises(AssertionError) as info:
        check_component("initializers", "own_seed")
    message = str(info.value)
    assert message.startswith("initializer 'own_seed': seeds 0 and 1 gave the same float32 "
                              "draw: it must draw from the generator it is given")


def test_an_initializer_on_global_state_fails(installed):
    with pytest.raises(AssertionError, match="^initializer 'global_state': seed 0 gave two "
                                             "different float32 draws"):
        check_component("initializers", "global_state")


def test_the_built_in_initializers_follow_their_generator():
    # zeros declares random = False; the others draw from the generator
    for name in registry("initializers").names():
        check_component("initializers", name)
    assert registry("initializers").get("zeros").random is False


# -- losses from their declarations ------------------------------------------------------------
def test_a_kl_divergence_plugin_loss_passes(installed):
    check_component("losses", "kl_divergence")
    # and the suite's own loop over every registered loss stays green with it installed
    assert "kl_divergence" in registry("losses").names()
    for name in registry("losses").names():
        if name != "nan_gradient_loss":
            check_component("losses", name)


class Unclear(MeanSquaredError):
    targets = ("labelz",)  # a misspelt target kind


def test_a_loss_declaration_the_kit_cannot_use_fails():
    with pytest.raises(AssertionError, match=r"loss 'Unclear': targets must be a non-empty "
                                             r"tuple of labels, one_hot"):
        check_component("losses", Unclear)


# -- datasets ------------------------------------------------------------------------------------
class Fixed(DatasetSource):
    """The same 6 points whatever the seed, but it does not say so."""

    name = "fixed"

    def load(self, rng, dtype=np.float64):
        x = np.arange(12, dtype=dtype).reshape(6, 2)
        return Dataset(self.name, x, np.array([0, 1] * 3), task="classification", n_classes=2)


class FixedDeclared(Fixed):
    random = False


class RandomDeclaredFixed(Fixed):
    random = False

    def load(self, rng, dtype=np.float64):
        x = rng.normal(size=(6, 2)).astype(dtype)
        return Dataset(self.name, x, np.array([0, 1] * 3), task="classification", n_classes=2)


class Unseeded(Fixed):
    def load(self, rng, dtype=np.float64):
        return RandomDeclaredFixed().load(np.random.default_rng(), dtype)


class AlwaysFloat64(Fixed):
    random = False

    def load(self, rng, dtype=np.float64):
        return super().load(rng, np.float64)


class LabelOutOfRange(FixedDeclared):
    def load(self, rng, dtype=np.float64):
        ds = super().load(rng, dtype)
        ds.y_train = ds.y_train.copy()  # changed after the Dataset checked itself
        ds.y_train[4] = 7
        return ds


class NotADataset(Fixed):
    def load(self, rng, dtype=np.float64):
        return super().load(rng, dtype).x_train


class FilesMissing(Fixed):
    def load(self, rng, dtype=np.float64):
        raise FileNotFoundError("fixed.idx is not in /nowhere")


@pytest.mark.parametrize("source,message", [
    (Fixed, ("seeds 0 and 1 gave the same arrays: a source must draw from the generator given "
             "to load (one deterministic by nature declares random = False)")),
    (RandomDeclaredFixed, "declares random = False, but seeds 0 and 1 gave different arrays"),
    (Unseeded, "seed 0 gave two different datasets"),
    (AlwaysFloat64, "(load with dtype=float32): x_train is float64, not float32"),
    (LabelOutOfRange, "(load with dtype=float32): y_train has label 7 at 4, outside [0, 2)"),
    (NotADataset, "load() must return an nnx.data.Dataset, got ndarray"),
], ids=["undeclared-fixed", "declared-fixed-but-random", "unseeded", "dtype", "label", "type"])
def test_the_dataset_check_fails(source, message):
    with pytest.raises(AssertionError) as info:
        check_component("datasets", source)
    assert str(info.value).startswith(f"dataset {source.__qualname__!r}")
    assert message in str(info.value)


def test_a_deterministic_dataset_that_says_so_passes():
    check_component("datasets", FixedDeclared)


def test_a_dataset_whose_files_are_missing_is_unavailable():
    with pytest.raises(ComponentUnavailable, match="^dataset 'FilesMissing': its files are "
                                                   "missing: fixed.idx is not in /nowhere$"):
        check_component("datasets", FilesMissing)
