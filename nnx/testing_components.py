"""The kit's checks of losses, optimizers, initializers and schedules. Part of ``nnx.testing``
(import from there)."""

from __future__ import annotations

import numpy as np

from nnx.losses import INPUT_KINDS, TARGET_KINDS
from nnx.testing_gradients import (
    assert_finite,
    assert_unchanged,
    away_from_kinks,
    check_loss_gradient,
)
from nnx.testing_registry import component_class, component_label, default_instance


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
