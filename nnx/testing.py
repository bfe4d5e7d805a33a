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
class, ``backward`` missing) fails first, with the registry's own explanation. NaN or inf in an
output, a gradient or a loss fails too, naming the component, the argument and the position.

A component that cannot be checked on this machine (a dataset whose files are missing) raises
``ComponentUnavailable`` instead: not a failure; a test turns it into a skip with its message.
"""

from __future__ import annotations

import inspect

import numpy as np

from nnx.losses import INPUT_KINDS, TARGET_KINDS
from nnx.registry import GROUPS, SINGULAR, component_problem, normalize, registry


class ComponentUnavailable(Exception):
    """A component that cannot be checked here (a dataset whose files are missing).

    Raised instead of a failure; in a test, ``pytest.skip(str(error))`` says why it was skipped.
    """


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


def assert_finite(array, what: str) -> None:
    """Raise AssertionError naming ``what`` and the first NaN or inf entry of ``array``."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return  # integers and booleans are always finite
    bad = ~np.isfinite(array)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        where = f" at {i}" if array.ndim else ""
        raise AssertionError(f"{what} is {array[i]}{where} "
                             f"({int(bad.sum())} of {array.size} entries not finite)")


def assert_close(analytic, numeric, what: str, rtol=1e-5, atol=1e-7) -> None:
    """Raise AssertionError naming ``what`` and the worst entry if the two arrays differ.

    NaN or inf in either is a failure, never a match: a NaN compares false with anything, so
    a plain ``err > tol`` test would let a gradient of NaN through.
    """
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{what}: gradient shape {analytic.shape}, expected {numeric.shape}")
    assert_finite(analytic, f"{what}: analytic gradient")
    assert_finite(numeric, f"{what}: numerical gradient (the function is not finite near "
                           "this input)")
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if (err > 0).any():
        i = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(
            f"{what}: analytic gradient {analytic[i]:.8g} != numerical {numeric[i]:.8g} at {i}"
        )


def assert_unchanged(now: np.ndarray, before: np.ndarray, what: str) -> None:
    """Raise AssertionError naming ``what`` and the first entry where ``now`` left ``before``."""
    if not np.array_equal(now, before, equal_nan=True):
        both_nan = np.isnan(now) & np.isnan(before) if now.dtype.kind in "fc" else False
        i = tuple(int(v) for v in np.argwhere(~((now == before) | both_nan))[0])
        raise AssertionError(f"{what} (first change at {i}: {before[i]!r} -> {now[i]!r})")


def check_module_gradients(module, x: np.ndarray, rtol=1e-5, atol=1e-7, seed=0,
                           name: str | None = None) -> None:
    """Check dL/dx and dL/dparams of a built module for L = sum(w * module(x)), w random.

    ``name`` starts every message (default: the module's ``name``, else its class name).
    """
    rng = np.random.default_rng(seed)
    if hasattr(module, "layers"):  # a Network: ask its first layer for dL/dx too
        first = module.layers[0]
        if hasattr(first, "propagate"):
            first.propagate = True
    name = name or getattr(module, "name", type(module).__name__)
    out = module.forward(x)
    assert_finite(out, f"{name}: output")
    weights = rng.normal(size=out.shape)

    def loss():
        return float(np.sum(weights * module.forward(x)))

    loss()
    grad_x = module.backward(weights.astype(out.dtype))
    grads = {k: g.copy() for k, g in module.grads.items()}
    if grad_x is not None:
        grad_x = np.array(grad_x)
        assert_close(grad_x, numerical_gradient(loss, x), f"{name}: dL/dx", rtol, atol)
    for key, p in module.params.items():
        assert_close(grads[key], numerical_gradient(loss, p), f"{name}: dL/d{key}", rtol, atol)


def check_loss_gradient(loss, pred: np.ndarray, target: np.ndarray, rtol=1e-5, atol=1e-7,
                        name: str | None = None) -> None:
    """Check loss.backward() against central differences of loss.forward at ``pred``."""
    name = name or type(loss).__name__
    assert_finite(loss.forward(pred, target), f"{name}: loss")
    analytic = np.array(loss.backward())
    numeric = numerical_gradient(lambda: loss.forward(pred, target), pred)
    assert_close(analytic, numeric, f"{name}: dL/dpred", rtol, atol)


def check_outputs_owned(module, x1: np.ndarray, g1: np.ndarray, x2: np.ndarray, g2: np.ndarray,
                        name: str) -> None:
    """What a module returns is the caller's, and what it is given it leaves alone.

    Calls forward(x1), backward(g1), then forward(x2), backward(g2), and fails when a later
    call changed the arrays the first two returned (a buffer reused for a result), or when
    forward or backward wrote into x or grad. A module may return its input itself (identity).
    """
    kept = {"x": x1.copy(), "grad": g1.copy()}
    y1 = module.forward(x1)
    assert_unchanged(x1, kept["x"], f"{name}: forward wrote into its input x")
    y1_kept = np.array(y1, copy=True)
    dx1 = module.backward(g1)
    assert_unchanged(g1, kept["grad"], f"{name}: backward wrote into its input grad")
    assert_unchanged(x1, kept["x"], f"{name}: backward wrote into the x given to forward")
    dx1_kept = None if dx1 is None else np.array(dx1, copy=True)
    module.forward(x2)
    module.backward(g2)
    owned = ("returned arrays belong to the caller: return a fresh array, keep buffers for "
             "internal scratch")
    assert_unchanged(y1, y1_kept, f"{name}: the output of forward was changed by a later "
                                  f"forward/backward; {owned}")
    if dx1 is not None:
        assert_unchanged(dx1, dx1_kept, f"{name}: dL/dx returned by backward was changed by a "
                                        f"later forward/backward; {owned}")


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


def default_instance(kind: str, name, **kwargs):
    """Build ``name`` (a registered name or a class) from its constructor defaults.

    ``kwargs`` are given to the constructor (a dataset's ``data_dir``). Fails when a parameter
    has neither a default nor a value here (except a layer's ``units``, given 3).
    """
    cls = component_class(kind, name)
    name = component_label(kind, name)
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is inspect.Parameter.empty and p.name not in kwargs
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if kind == "layers" and required == ["units"]:
        return cls(units=3, **kwargs)
    if required:
        raise AssertionError(f"{kind} {name!r}: parameters {required} have no default")
    return cls(**kwargs)


# -- conformance, one call per kind -------------------------------------------------------
def check_activation(name, seed: int = 0, **kwargs) -> None:
    """Gradient, finite values, shape, dtype (float32 and float64), determinism, and arrays
    that belong to the caller (``check_outputs_owned``) of an activation."""
    rng = np.random.default_rng(seed)
    act = default_instance("activations", name, **kwargs)
    label = f"activation {component_label('activations', name)!r}"
    x = away_from_kinks(rng.normal(size=(5, 4)) * 2)
    act.build(4, rng, np.float64)
    check_module_gradients(act, x, name=label)
    for dtype in (np.float32, np.float64):
        y = act.forward(x.astype(dtype))
        if y.shape != x.shape or y.dtype != dtype:
            raise AssertionError(f"{label}: {dtype.__name__} input gave {y.dtype} {y.shape}")
        assert_finite(y, f"{label}: output for {dtype.__name__} input")
        g = act.backward(np.ones_like(y))
        if g.shape != x.shape or g.dtype != dtype:
            raise AssertionError(f"{label}: backward gave {g.dtype} {g.shape}")
        assert_finite(g, f"{label}: dL/dx for {dtype.__name__} input")
    first = act.forward(x).copy()
    if not np.array_equal(first, act.forward(x)):
        raise AssertionError(f"{label}: forward is not deterministic")
    check_returned_arrays("activations", name, seed, **kwargs)


def check_returned_arrays(kind: str, name, seed: int = 0, **kwargs) -> None:
    """``check_outputs_owned`` for an activation or a layer built from defaults, on its own
    (a layer's ``propagate`` switched on), in training and in eval mode, float64."""
    label = f"{SINGULAR[kind]} {component_label(kind, name)!r}"
    for training in (True, False):
        rng = np.random.default_rng(seed)
        module = default_instance(kind, name, **kwargs)
        module.build(4, rng, np.float64)
        if hasattr(module, "propagate"):
            module.propagate = True  # see Dense.propagate: dL/dx is what is checked here
        module.train(training)
        x1, x2 = away_from_kinks(rng.normal(size=(5, 4)) * 2), rng.normal(size=(5, 4)) * 2
        y = module.forward(x1)
        g1, g2 = rng.normal(size=y.shape), rng.normal(size=y.shape)
        mode = "training" if training else "eval"
        check_outputs_owned(module, x1, g1, x2, g2, f"{label} ({mode} mode)")


def check_loss_declaration(loss, label: str) -> None:
    """A loss's ``targets``, ``inputs`` and ``input_range`` say something the kit can use."""
    targets = getattr(loss, "targets", ())
    if isinstance(targets, str) or not targets or not set(targets) <= set(TARGET_KINDS):
        raise AssertionError(f"{label}: targets must be a non-empty tuple of "
                             f"{', '.join(TARGET_KINDS)}; got {targets!r}")
    if getattr(loss, "inputs", None) not in INPUT_KINDS:
        raise AssertionError(f"{label}: inputs must be one of {', '.join(INPUT_KINDS)}; "
                             f"got {getattr(loss, 'inputs', None)!r}")
    low, high = getattr(loss, "input_range", (None, None))
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
        raise AssertionError(f"{label}: input_range must be (low, high) with low < high; "
                             f"got {loss.input_range!r}")


def loss_inputs(loss, n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Valid predictions (n, classes) for ``loss``, from its declared ``inputs`` and
    ``input_range``: inside the range with a margin, rows summing to 1 for probabilities of
    class targets (as a softmax gives them)."""
    low, high = loss.input_range
    if loss.inputs == "probabilities":
        low, high = max(low, 0.0), min(high, 1.0)
    if loss.inputs == "probabilities" and loss.targets[0] in ("labels", "one_hot",
                                                              "probabilities"):
        return _rows_summing_to_one(rng.normal(size=(n, classes)))
    if np.isfinite(low) and np.isfinite(high):
        margin = 0.05 * (high - low)
        return rng.uniform(low + margin, high - margin, size=(n, classes))
    if np.isfinite(low):
        return low + 0.1 + rng.exponential(size=(n, classes))
    if np.isfinite(high):
        return high - 0.1 - rng.exponential(size=(n, classes))
    return rng.normal(size=(n, classes))


def _rows_summing_to_one(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loss_targets(kind: str, pred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Targets of encoding ``kind`` (``nnx.losses.TARGET_KINDS``) for predictions ``pred``."""
    n, classes = pred.shape
    if kind == "labels":
        return rng.integers(0, classes, n).astype(np.int64)
    if kind == "one_hot":
        return np.eye(classes)[rng.integers(0, classes, n)]
    if kind == "probabilities":  # strictly positive: log(t) is finite
        return _rows_summing_to_one(rng.normal(size=pred.shape))
    if kind == "binary":
        return (rng.random(pred.shape) > 0.5).astype(np.float64)
    return pred + away_from_kinks(rng.normal(size=pred.shape))  # values


def check_loss(name, seed: int = 0, **kwargs) -> None:
    """Gradient, finite scalar output, dtype and shape checks of a loss, for every target
    encoding it declares, on inputs built from its declaration (never from its name)."""
    rng = np.random.default_rng(seed)
    loss = default_instance("losses", name, **kwargs)
    label = f"loss {component_label('losses', name)!r}"
    check_loss_declaration(loss, label)
    for kind in loss.targets:
        what = f"{label} with {kind} targets"
        pred = loss_inputs(loss, 6, 3, rng)
        target = loss_targets(kind, pred, rng)
        if kind == "binary":  # keep pred off the kink of losses like mae at pred = target
            pred = np.clip(target + away_from_kinks(pred - target), *_open(loss))
        check_loss_gradient(loss, pred, target, name=what)
        for dtype in (np.float32, np.float64):
            typed = target if kind == "labels" else target.astype(dtype)
            value = loss.forward(pred.astype(dtype), typed)
            if not isinstance(value, float) or not np.isfinite(value):
                raise AssertionError(f"{what}: forward must return a finite float for "
                                     f"{dtype.__name__} inputs, got {value!r}")
            g = loss.backward()
            if g.shape != pred.shape or g.dtype != dtype:
                raise AssertionError(f"{what}: backward gave {g.dtype} {g.shape} for "
                                     f"{dtype.__name__}")
            assert_finite(g, f"{what}: dL/dpred for {dtype.__name__} inputs")
        _check_loss_owns_its_results(loss, pred, target, rng, what)
        wrong = target[:, :1] if target.ndim == 2 and target.shape[1] > 1 else target[:-1]
        try:
            loss.forward(pred, wrong)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{what}: mismatched target shape was not rejected")


def _open(loss) -> tuple[float, float]:
    """The declared input range, shrunk by a hair so that clipping stays inside it."""
    low, high = loss.input_range
    if loss.inputs == "probabilities":
        low, high = max(low, 0.0), min(high, 1.0)
    return np.nextafter(low, np.inf), np.nextafter(high, -np.inf)


def _check_loss_owns_its_results(loss, pred, target, rng, what: str) -> None:
    """dL/dpred is the caller's (a later forward/backward leaves it); pred and target are left."""
    kept_pred, kept_target = pred.copy(), target.copy()
    loss.forward(pred, target)
    grad = loss.backward()
    grad_kept = np.array(grad, copy=True)
    assert_unchanged(pred, kept_pred, f"{what}: forward wrote into pred")
    assert_unchanged(target, kept_target, f"{what}: forward wrote into target")
    other = loss_inputs(loss, *pred.shape, rng)
    loss.forward(other, loss_targets(loss.targets[0], other, rng))
    loss.backward()
    assert_unchanged(grad, grad_kept, f"{what}: dL/dpred returned by backward was changed by "
                                      "a later forward/backward; returned arrays belong to "
                                      "the caller")


def check_optimizer(name, seed: int = 0, **kwargs) -> None:
    """An optimizer from defaults must lower a quadratic, update in place, keep dtype, be
    deterministic and keep its parameters finite."""
    cls, name = component_class("optimizers", name), component_label("optimizers", name)

    def run(dtype):
        opt = default_instance("optimizers", cls, **kwargs)
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
        assert_finite(p, f"optimizer {name!r}: parameter p after 200 {dtype.__name__} steps")
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


def check_layer(name, seed: int = 0, **kwargs) -> None:
    """Gradients of inputs and parameters of a layer built from defaults, in float64; finite
    outputs in float32 and float64 networks; arrays that belong to the caller."""
    from nnx.network import Network

    layer = default_instance("layers", name, **kwargs)
    cls, label = component_class("layers", name), f"layer {component_label('layers', name)!r}"
    rng = np.random.default_rng(seed)
    net = Network([layer], in_features=4, rng=rng, dtype=np.float64)
    net.eval()  # dropout-like layers are checked in eval mode (deterministic)
    x = rng.normal(size=(5, 4))
    check_module_gradients(net, x, name=label)
    for dtype in (np.float32, np.float64):
        typed = Network([default_instance("layers", cls, **kwargs)], 4,
                        rng=np.random.default_rng(seed), dtype=dtype)
        y = typed.forward(x.astype(dtype))
        if y.dtype != dtype:
            raise AssertionError(f"{label}: {dtype.__name__} network gave {y.dtype}")
        assert_finite(y, f"{label}: output of a {dtype.__name__} network")
    check_returned_arrays("layers", name, seed, **kwargs)


def check_initializer(name, seed: int = 0, **kwargs) -> None:
    """Shape, dtype, finite values, and a draw that follows the generator it is given.

    One seed gives one draw, twice; another seed gives another draw; two calls on one
    generator give two draws (two layers never start equal). An initializer that is
    constant by nature (zeros) declares ``random = False`` and must then give one array for
    every seed. An initializer that seeds a generator of its own, or draws from NumPy's
    global state, fails.
    """
    init = default_instance("initializers", name, **kwargs)
    label = f"initializer {component_label('initializers', name)!r}"
    random = getattr(init, "random", True)
    shape = (7, 5)
    for dtype in (np.float32, np.float64):
        kind = dtype.__name__
        a = init(shape, np.random.default_rng(seed), dtype)
        if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
            raise AssertionError(f"{label}: asked for {kind} {shape}, got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {np.shape(a)}")
        assert_finite(a, f"{label}: {kind} draw")
        if not np.array_equal(a, init(shape, np.random.default_rng(seed), dtype)):
            raise AssertionError(f"{label}: seed {seed} gave two different {kind} draws: it "
                                 "must draw only from the generator it is given (no global "
                                 "np.random, no generator of its own)")
        other = init(shape, np.random.default_rng(seed + 1), dtype)
        if random and np.array_equal(a, other):
            raise AssertionError(f"{label}: seeds {seed} and {seed + 1} gave the same {kind} "
                                 "draw: it must draw from the generator it is given, not from "
                                 "one it seeds itself (a constant initializer declares "
                                 "random = False)")
        if not random and not np.array_equal(a, other):
            raise AssertionError(f"{label}: declares random = False, but seeds {seed} and "
                                 f"{seed + 1} gave different {kind} draws")
        rng = np.random.default_rng(seed)
        first = init(shape, rng, dtype)
        if random and np.array_equal(first, init(shape, rng, dtype)):
            raise AssertionError(f"{label}: two calls on one generator gave the same {kind} "
                                 "draw: it must advance the generator it is given")


def check_schedule(name, **kwargs) -> None:
    """A schedule from defaults gives a finite positive factor for every epoch."""
    sched = default_instance("schedules", name, **kwargs)
    name = component_label("schedules", name)
    factors = [sched(e, 20) for e in range(20)]
    if not all(np.isfinite(f) and f >= 0 for f in factors):
        raise AssertionError(f"schedule {name!r}: factors {factors}")


DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def check_dataset(name, seed: int = 0, **kwargs) -> None:
    """A dataset source built from defaults (and ``kwargs``, e.g. ``data_dir``): shapes, dtypes
    (float32 and float64), finite x, labels in [0, n_classes), same seed -> same arrays,
    other seed -> other arrays.

    A source that is deterministic by nature (fixed files, a standard split) declares
    ``random = False`` and must then give the same arrays for every seed. Missing files
    (``FileNotFoundError``, e.g. ``nnx.data.DatasetNotFound``) raise ``ComponentUnavailable``.
    """
    from nnx.data import Dataset  # the container every source returns

    source = default_instance("datasets", name, **kwargs)
    label = f"dataset {component_label('datasets', name)!r}"

    def load(seed, dtype):
        try:
            ds = source.load(np.random.default_rng(seed), dtype=dtype)
        except FileNotFoundError as error:
            raise ComponentUnavailable(f"{label}: its files are missing: {error}") from error
        if not isinstance(ds, Dataset):
            raise AssertionError(  # noqa: TRY004 - every failure of the kit is an AssertionError
                f"{label}: load() must return an nnx.data.Dataset, got {type(ds).__name__}")
        _check_dataset_arrays(ds, np.dtype(dtype), label)
        return ds

    a = load(seed, np.float32)
    load(seed, np.float64)
    if not _same_arrays(a, load(seed, np.float32)):
        raise AssertionError(f"{label}: seed {seed} gave two different datasets: it must draw "
                             "only from the generator given to load")
    random = getattr(source, "random", True)
    same = _same_arrays(a, load(seed + 1, np.float32))
    if random and same:
        raise AssertionError(f"{label}: seeds {seed} and {seed + 1} gave the same arrays: a "
                             "source must draw from the generator given to load (one "
                             "deterministic by nature declares random = False)")
    if not random and not same:
        raise AssertionError(f"{label}: declares random = False, but seeds {seed} and "
                             f"{seed + 1} gave different arrays")


def _check_dataset_arrays(ds, dtype: np.dtype, label: str) -> None:
    where = f"{label} (load with dtype={dtype.name})"
    if ds.task not in ("classification", "regression"):
        raise AssertionError(f"{where}: task must be classification or regression, "
                             f"got {ds.task!r}")
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x is None and y is None and split == "test":
            continue
        if not isinstance(x, np.ndarray) or x.ndim != 2 or len(x) == 0:
            raise AssertionError(f"{where}: x_{split} must be a non-empty (n, features) array, "
                                 f"got shape {np.shape(x)}")
        if x.dtype != dtype:
            raise AssertionError(f"{where}: x_{split} is {x.dtype}, not {dtype.name}")
        if x.shape[1] != ds.x_train.shape[1]:
            raise AssertionError(f"{where}: x_{split} has {x.shape[1]} features, x_train "
                                 f"{ds.x_train.shape[1]}")
        assert_finite(x, f"{where}: x_{split}")
        y = np.asarray(y)
        if len(y) != len(x):
            raise AssertionError(f"{where}: x_{split} has {len(x)} rows, y_{split} {len(y)}")
        if ds.task == "regression":
            if y.ndim != 2 or y.dtype.kind != "f":
                raise AssertionError(f"{where}: regression y_{split} must be float (n, k), got "
                                     f"{y.dtype} {y.shape}")
            assert_finite(y, f"{where}: y_{split}")
            continue
        if y.ndim != 1 or y.dtype != np.int64:
            raise AssertionError(f"{where}: y_{split} must be int64 labels (n,), got {y.dtype} "
                                 f"{y.shape}")
        bad = np.flatnonzero((y < 0) | (y >= ds.n_classes))
        if bad.size:
            raise AssertionError(f"{where}: y_{split} has label {y[bad[0]]} at {bad[0]}, outside "
                                 f"[0, {ds.n_classes})")


def _same_arrays(a, b) -> bool:
    for key in DATASET_ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        if (x is None) != (y is None) or x is not None and not np.array_equal(x, y):
            return False
    return True


CHECKS = {
    "activations": check_activation,
    "losses": check_loss,
    "optimizers": check_optimizer,
    "layers": check_layer,
    "initializers": check_initializer,
    "schedules": check_schedule,
    "datasets": check_dataset,
}


def check_component(kind: str, component, **kwargs) -> None:
    """The conformance check for one component: a registered name, ``"dist:name"``, or a class.

    First the structural check the registry makes on every plugin (base class, required
    methods), then the behavioural checks of its kind (``CHECKS[kind]``). ``kwargs`` go to
    the component's constructor (a dataset's ``data_dir``).
    """
    if kind not in CHECKS:
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {', '.join(GROUPS)}")
    problem = component_problem(kind, component_class(kind, component))
    if problem:
        raise AssertionError(f"{SINGULAR[kind]} {component_label(kind, component)!r}: {problem}")
    CHECKS[kind](component, **kwargs)
