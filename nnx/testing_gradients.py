"""The kit's numeric checks: central differences, closeness, finiteness, and arrays that
belong to the caller. Part of ``nnx.testing`` (import from there).

Every check compares an analytic gradient (``backward``) with central differences,
df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h, in float64, and raises AssertionError with
the worst entry when they disagree.
"""

from __future__ import annotations

import numpy as np


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
    """Check dL/dx and dL/dparams of a built module for L = sum(w * module(x)), w random (a
    random upstream gradient, so that no error hides behind a gradient of ones).

    ``name`` starts every message (default: the module's ``name``, else its class name). A
    network's parameters are checked layer by layer and named (``layer 2.0 (dense): dL/dW``),
    not as one flat buffer; so are a composite block's.
    """
    rng = np.random.default_rng(seed)
    if hasattr(module, "layers") and hasattr(module, "flat_params"):
        # A Network: ask its first layers for dL/dx too (it switched off the ones before and at
        # its first layer with parameters; see Network.__init__).
        for layer in module.layers:
            if hasattr(layer, "propagate"):
                layer.propagate = True
    name = name or getattr(module, "name", type(module).__name__)
    out = module.forward(x)
    assert_finite(out, f"{name}: output")
    weights = rng.normal(size=out.shape)

    def loss():
        return float(np.sum(weights * module.forward(x)))

    loss()
    grad_x = module.backward(weights.astype(out.dtype))
    if grad_x is not None:
        grad_x = np.array(grad_x)
        assert_close(grad_x, numerical_gradient(loss, x), f"{name}: dL/dx", rtol, atol)
    for param, grad, what in _named_arrays(module):
        assert_close(grad.copy(), numerical_gradient(loss, param), f"{name}: {what}", rtol, atol)


def _named_arrays(module) -> list[tuple]:
    """(param, grad, "layer 2.0 (dense): dL/dW") for every parameter of a module, a block or a
    network, named by the layer that holds it."""
    from nnx.network import leaves

    children = module.children() if hasattr(module, "children") else []
    if not children:
        return [(p, module.grads[k], f"dL/d{k}") for k, p in module.params.items()]
    return [(p, leaf.grads[k], f"{getattr(leaf, 'name', path)}: dL/d{k}")
            for path, leaf in leaves(children) for k, p in leaf.params.items()]


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
