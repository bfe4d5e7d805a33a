"""Gradient checks and conformance checks, for nnx's own tests and for plugin authors.

Every check compares an analytic gradient (``backward``) with central differences,
df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h, in float64, and raises AssertionError with
the worst entry when they disagree. A plugin's test suite can be one line per component:

    from nnx.testing import check_component
    def test_my_activation():
        check_component("activations", "my_activation")

``check_component`` also takes the class itself (``check_component("activations", Mish)``),
which checks a component before it is registered. Every check raises AssertionError with a
message naming the component; a component that is not a valid class of its kind (wrong base
class, ``backward`` missing) fails first, with the registry's own explanation.
"""

from __future__ import annotations

import inspect

import numpy as np

from nnx.registry import GROUPS, SINGULAR, component_problem, normalize, registry


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function f at x (x is restored afterwards)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def assert_close(analytic, numeric, what: str, rtol=1e-5, atol=1e-7) -> None:
    """Raise AssertionError naming ``what`` and the worst entry if the two arrays differ."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{what}: gradient shape {analytic.shape}, expected {numeric.shape}")
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if (err > 0).any():
        i = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(
            f"{what}: analytic gradient {analytic[i]:.8g} != numerical {numeric[i]:.8g} at {i}"
        )


def check_module_gradients(module, x: np.ndarray, rtol=1e-5, atol=1e-7, seed=0) -> None:
    """Check dL/dx and dL/dparams of a built module for L = sum(w * module(x)), w random."""
    rng = np.random.default_rng(seed)
    if hasattr(module, "layers"):  # a Network: ask its first layer for dL/dx too
        first = module.layers[0]
        if hasattr(first, "propagate"):
            first.propagate = True
    out = module.forward(x)
    weights = rng.normal(size=out.shape)

    def loss():
        return float(np.sum(weights * module.forward(x)))

    loss()
    grad_x = module.backward(weights.astype(out.dtype))
    grads = {k: g.copy() for k, g in module.grads.items()}
    name = getattr(module, "name", type(module).__name__)
    if grad_x is not None:
        grad_x = np.array(grad_x)
        assert_close(grad_x, numerical_gradient(loss, x), f"{name}: dL/dx", rtol, atol)
    for key, p in module.params.items():
        assert_close(grads[key], numerical_gradient(loss, p), f"{name}: dL/d{key}", rtol, atol)


def check_loss_gradient(loss, pred: np.ndarray, target: np.ndarray, rtol=1e-5, atol=1e-7) -> None:
    """Check loss.backward() against central differences of loss.forward at ``pred``."""
    loss.forward(pred, target)
    analytic = np.array(loss.backward())
    numeric = numerical_gradient(lambda: loss.forward(pred, target), pred)
    assert_close(analytic, numeric, f"{type(loss).__name__}: dL/dpred", rtol, atol)


def away_from_kinks(x: np.ndarray, margin: float = 1e-2) -> np.ndarray:
    """Move entries off 0 (the kink of relu, leaky_relu, mae): differences across a kink lie."""
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin * 3, x)


def component_class(kind: str, component) -> type:
    """The class of a registered name (``"relu"``, ``"dist:name"``), or the class itself."""
    if isinstance(component, type):
        return component
    return registry(kind).get(component)


def component_label(kind: str, component) -> str:
    """How messages call a component: its registered name (found for a class when registered)."""
    if not isinstance(component, type):
        return str(component)
    value = f"{component.__module__}:{component.__qualname__}"
    for entry in registry(kind).entries():  # metadata only: nothing is imported
        if entry.value == value:
            return entry.name if normalize(entry.distribution) == "nnx" else entry.qualified_name
    return component.__qualname__


def default_instance(kind: str, name):
    """Build ``name`` (a registered name or a class) from its constructor defaults.

    Fails when a parameter has no default (except a layer's ``units``, given 3).
    """
    cls = component_class(kind, name)
    name = component_label(kind, name)
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if kind == "layers" and required == ["units"]:
        return cls(units=3)
    if required:
        raise AssertionError(f"{kind} {name!r}: parameters {required} have no default")
    return cls()


# -- conformance, one call per kind -------------------------------------------------------
def check_activation(name: str, seed: int = 0) -> None:
    """Gradient, shape, dtype (float32 and float64) and determinism of an activation."""
    rng = np.random.default_rng(seed)
    act = default_instance("activations", name)
    name = component_label("activations", name)
    x = away_from_kinks(rng.normal(size=(5, 4)) * 2)
    act.build(4, rng, np.float64)
    check_module_gradients(act, x)
    for dtype in (np.float32, np.float64):
        y = act.forward(x.astype(dtype))
        if y.shape != x.shape or y.dtype != dtype:
            raise AssertionError(f"activation {name!r}: {dtype.__name__} input gave {y.dtype} {y.shape}")
        g = act.backward(np.ones_like(y))
        if g.shape != x.shape or g.dtype != dtype:
            raise AssertionError(f"activation {name!r}: backward gave {g.dtype} {g.shape}")
    first = act.forward(x).copy()
    if not np.array_equal(first, act.forward(x)):
        raise AssertionError(f"activation {name!r}: forward is not deterministic")


def _targets_for(loss_name: str, pred: np.ndarray, rng) -> np.ndarray:
    if "cross_entropy" in loss_name and "softmax" not in loss_name:
        return (rng.random(pred.shape) > 0.5).astype(pred.dtype)
    if "softmax" in loss_name:
        return np.eye(pred.shape[1], dtype=pred.dtype)[rng.integers(0, pred.shape[1], len(pred))]
    return pred + away_from_kinks(rng.normal(size=pred.shape))


def check_loss(name: str, seed: int = 0) -> None:
    """Gradient, scalar output, dtype and shape checks of a loss."""
    rng = np.random.default_rng(seed)
    loss = default_instance("losses", name)
    name = component_label("losses", name)
    short = name.rpartition(":")[2]  # "nnx:binary_cross_entropy" is binary_cross_entropy too
    pred = rng.normal(size=(6, 3))
    if short == "binary_cross_entropy":  # takes probabilities
        pred = rng.uniform(0.05, 0.95, size=(6, 3))
    target = _targets_for(short, pred, rng)
    check_loss_gradient(loss, pred, target)
    for dtype in (np.float32, np.float64):
        value = loss.forward(pred.astype(dtype), target.astype(dtype))
        if not isinstance(value, float) or not np.isfinite(value):
            raise AssertionError(f"loss {name!r}: forward must return a finite float, got {value!r}")
        g = loss.backward()
        if g.shape != pred.shape or g.dtype != dtype:
            raise AssertionError(f"loss {name!r}: backward gave {g.dtype} {g.shape} for {dtype.__name__}")
    try:
        loss.forward(pred, target[:, :1] if target.ndim == 2 and target.shape[1] > 1 else target[:-1])
    except ValueError:
        pass
    else:
        raise AssertionError(f"loss {name!r}: mismatched target shape was not rejected")


def check_optimizer(name: str, seed: int = 0) -> None:
    """An optimizer from defaults must lower a quadratic, update in place, keep dtype, be deterministic."""
    cls, name = component_class("optimizers", name), component_label("optimizers", name)

    def run(dtype):
        opt = default_instance("optimizers", cls)
        rng = np.random.default_rng(seed)
        target = rng.normal(size=10).astype(dtype)
        p = np.zeros(10, dtype)
        same = p
        start = float(np.sum((p - target) ** 2))
        for _ in range(200):
            g = 2 * (p - target)
            opt.step({"p": p}, {"p": g})
        if p is not same or p.dtype != dtype:
            raise AssertionError(f"optimizer {name!r}: parameters must be updated in place")
        end = float(np.sum((p - target) ** 2))
        if not end < start:
            raise AssertionError(f"optimizer {name!r}: loss {start:.4g} -> {end:.4g} did not fall")
        return p

    for dtype in (np.float32, np.float64):
        a, b = run(dtype), run(dtype)
        if not np.array_equal(a, b):
            raise AssertionError(f"optimizer {name!r}: not deterministic")
    try:
        cls(lr=-1.0)
    except ValueError as error:
        if "lr" not in str(error):
            raise AssertionError(f"optimizer {name!r}: lr=-1 error does not name lr: {error}")
    except TypeError:
        pass  # an optimizer without lr
    else:
        raise AssertionError(f"optimizer {name!r}: lr=-1 was accepted")


def check_layer(name: str, seed: int = 0) -> None:
    """Gradients of inputs and parameters of a layer built from defaults, in float64."""
    from nnx.network import Network

    layer = default_instance("layers", name)
    cls, name = component_class("layers", name), component_label("layers", name)
    rng = np.random.default_rng(seed)
    net = Network([layer], in_features=4, rng=rng, dtype=np.float64)
    net.eval()  # dropout-like layers are checked in eval mode (deterministic)
    x = rng.normal(size=(5, 4))
    check_module_gradients(net, x)
    for dtype in (np.float32, np.float64):
        net32 = Network([default_instance("layers", cls)], 4, rng=np.random.default_rng(seed),
                        dtype=dtype)
        y = net32.forward(x.astype(dtype))
        if y.dtype != dtype:
            raise AssertionError(f"layer {name!r}: {dtype.__name__} network gave {y.dtype}")


def check_initializer(name: str, seed: int = 0) -> None:
    """Shape, dtype and seeded determinism of an initializer."""
    init = default_instance("initializers", name)
    name = component_label("initializers", name)
    for dtype in (np.float32, np.float64):
        a = init((7, 5), np.random.default_rng(seed), dtype)
        b = init((7, 5), np.random.default_rng(seed), dtype)
        if a.shape != (7, 5) or a.dtype != dtype or not np.array_equal(a, b):
            raise AssertionError(f"initializer {name!r}: wrong shape/dtype or not deterministic")


def check_schedule(name: str) -> None:
    """A schedule from defaults gives a finite positive factor for every epoch."""
    sched = default_instance("schedules", name)
    name = component_label("schedules", name)
    factors = [sched(e, 20) for e in range(20)]
    if not all(np.isfinite(f) and f >= 0 for f in factors):
        raise AssertionError(f"schedule {name!r}: factors {factors}")


def check_dataset(name: str, seed: int = 0) -> None:
    """A dataset source from defaults loads, deterministically, in both dtypes."""
    from nnx.data import Dataset

    source = default_instance("datasets", name)
    name = component_label("datasets", name)
    a = source.load(np.random.default_rng(seed), dtype=np.float32)
    b = source.load(np.random.default_rng(seed), dtype=np.float32)
    returned_dataset = isinstance(a, Dataset)
    if not returned_dataset:
        raise AssertionError(f"dataset {name!r}: load() must return an nnx.data.Dataset, "
                             f"got {type(a).__name__}")
    if a.x_train.dtype != np.float32 or not np.array_equal(a.x_train, b.x_train):
        raise AssertionError(f"dataset {name!r}: wrong dtype or not deterministic")
    if a.task == "classification" and a.y_train.dtype != np.int64:
        raise AssertionError(f"dataset {name!r}: classification labels must be int64, "
                             f"got {a.y_train.dtype}")


CHECKS = {
    "activations": check_activation,
    "losses": check_loss,
    "optimizers": check_optimizer,
    "layers": check_layer,
    "initializers": check_initializer,
    "schedules": check_schedule,
    "datasets": check_dataset,
}


def check_component(kind: str, component) -> None:
    """The conformance check for one component: a registered name, ``"dist:name"``, or a class.

    First the structural check the registry makes on every plugin (base class, required
    methods), then the behavioural checks of its kind (``CHECKS[kind]``).
    """
    if kind not in CHECKS:
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {', '.join(GROUPS)}")
    problem = component_problem(kind, component_class(kind, component))
    if problem:
        raise AssertionError(f"{SINGULAR[kind]} {component_label(kind, component)!r}: {problem}")
    CHECKS[kind](component)
