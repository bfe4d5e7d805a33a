"""Optimizers: ``step(params, grads)`` updates every parameter in place.

Built from config alone (hyper-parameters only); parameters arrive at ``step``. Per-parameter
state is created on first use. Each rule is one ``update`` hook, written with in-place NumPy
(``out=``) because the network hands over all its parameters as one flat array: one update
per step instead of one per array.

Common options: ``weight_decay`` (L2, added to the gradient; AdamW decouples it),
``clip_norm`` (rescale all gradients together when their global L2 norm exceeds it; 0 = off)
and ``decay_all``. ``step`` uses ``grads`` as scratch space: they are recomputed by the next
backward pass.

Which parameters are decayed: ``step(params, grads, decay)`` takes, per key, True/False or a
boolean mask of the parameter's shape (a network passes ``network.decay``, built from its
layers' flags: weights yes, biases and normalisation scales/shifts no). The mask is applied with
the same vectorised operation as before, on each decayed stretch of the flat buffer (one per
weight matrix), or through a per-element factor for a mask of many stretches.
Without ``decay`` (a plain dict of arrays), or with ``decay_all=True`` (the behaviour before
issue 13), every parameter is decayed.
"""

from __future__ import annotations

import math

import numpy as np


def _check(name: str, value: float, low: float, high: float = math.inf, *, low_open=False,
           high_open=True) -> float:
    """Return ``value`` as float if it lies in the interval, else a ValueError that names it."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value}")
    return value


MAX_RUNS = 64  # decayed stretches of a mask handled as slices; more: a per-element factor


def _runs(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """(start, end) of each stretch of True in the flattened mask, or None past MAX_RUNS."""
    padded = np.concatenate(([False], mask.reshape(-1), [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if len(edges) // 2 > MAX_RUNS:
        return None
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class Optimizer:
    """Base class: clipping and weight decay here, the update rule in ``update``."""

    decoupled_weight_decay = False

    def __init__(self, lr: float, weight_decay: float = 0.0, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        # The rate the next step uses: the trainer sets it each epoch from the schedule and the
        # configured rate, which stays in config()["lr"].
        self.lr = _check("lr", lr, 0.0, low_open=True)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        self.clip_norm = _check("clip_norm", clip_norm, 0.0)
        if not isinstance(decay_all, (bool, np.bool_)):
            # a ValueError, as every bad argument is (the config reports those)
            raise ValueError(f"decay_all must be true or false, got {decay_all!r}")  # noqa: TRY004
        self.decay_all = bool(decay_all)
        # What rebuilds the optimizer; subclasses add their own settings.
        self._config = {"lr": self.lr, "weight_decay": self.weight_decay,
                        "clip_norm": self.clip_norm, "decay_all": self.decay_all}
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.iterations = 0  # completed steps; Adam's bias correction counts them
        # key -> (the decay entry it was made from, the mask: None = all, False = none, array,
        # the mask's runs of decayed elements or None); key -> (rate, per-element factor).
        # Caches, not state.
        self._masks: dict[str, tuple] = {}
        self._factors: dict[str, tuple] = {}
        self._key, self.decay_mask = None, None  # the parameter being updated, for update()

    def config(self) -> dict:
        return dict(self._config)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             decay: dict | None = None) -> None:
        """One update of every parameter from its gradient; ``decay`` says which are decayed
        (per key True/False or a boolean mask; see the module docstring)."""
        if params.keys() != grads.keys():
            raise ValueError(
                f"params and grads must have the same keys, got {sorted(params)} and {sorted(grads)}"
            )
        if self.clip_norm > 0:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            if norm > self.clip_norm:
                for g in grads.values():
                    g *= self.clip_norm / norm
        self.iterations += 1
        for key, p in params.items():
            g = grads[key]
            self._key = key
            self.decay_mask = self._mask(key, None if decay is None else decay.get(key, True))
            if self.weight_decay and not self.decoupled_weight_decay:
                runs = self._decayed_runs(p)
                if self.decay_mask is None:
                    g += self.weight_decay * p  # L2: the gradient of (wd / 2) ||p||^2
                elif runs is not None:  # the weights' stretches of the flat buffer
                    flat_g, flat_p = g.reshape(-1), p.reshape(-1)
                    for start, end in runs:
                        flat_g[start:end] += self.weight_decay * flat_p[start:end]
                elif self.decay_mask is not False:
                    g += self.decay_factor(key, p.dtype, scale=self.weight_decay) * p
            if key not in self.state:
                self.state[key] = self.init_state(p)
            self.update(p, g, self.state[key])

    def _mask(self, key: str, entry):
        """None (decay every element), False (none) or a boolean array, cached per key."""
        cached = self._masks.get(key)
        if cached is not None and cached[0] is entry:
            return cached[1]
        runs = None
        if self.decay_all or entry is None or entry is True:
            mask = None
        elif entry is False:
            mask = False
        else:
            array = np.asarray(entry, bool)
            mask = None if array.all() else False if not array.any() else array
            if mask is not None and mask is not False:
                runs = _runs(mask)
        self._masks[key], self._factors[key] = (entry, mask, runs), None
        return mask

    def _decayed_runs(self, p: np.ndarray):
        """The (start, end) stretches of the flattened parameter being updated that are decayed,
        when they are few (a network's mask is one stretch per weight matrix) and ``p`` is
        contiguous (its flat view writes through); else None."""
        runs = self._masks[self._key][2] if self._key in self._masks else None
        return runs if runs is not None and p.flags.c_contiguous else None

    def decay_factor(self, key: str, dtype, scale: float | None = None) -> np.ndarray:
        """Per element of the parameter ``key``: ``scale`` where decayed, 0 elsewhere (L2); by
        default ``1 - lr * weight_decay`` where decayed, 1 elsewhere (decoupled, as AdamW
        multiplies). Made once per key and rate (a schedule changes the rate each epoch)."""
        rate = self.lr if scale is None else ("scale", scale)
        cached = self._factors.get(key)
        if cached is None or cached[0] != rate:
            mask = self._masks[key][1]
            decayed, kept = (1.0 - self.lr * self.weight_decay, 1.0) if scale is None \
                else (scale, 0.0)
            cached = (rate, np.where(mask, decayed, kept).astype(dtype))
            self._factors[key] = cached
        return cached[1]

    def decay_decoupled(self, p: np.ndarray) -> None:
        """p = p - lr * weight_decay * p where decay applies (biases, scales: not), in place:
        what an ``update`` with decoupled decay (AdamW, a plugin's Lion) calls first. A
        multiplication by a scalar: of all of p when every element is decayed (as before issue
        13), else of each decayed stretch of the flat buffer (one per weight matrix); a mask of
        more than ``MAX_RUNS`` stretches multiplies by a cached per-element factor instead."""
        if not self.weight_decay or self.decay_mask is False:
            return
        runs = self._decayed_runs(p)
        if self.decay_mask is None:
            p *= 1.0 - self.lr * self.weight_decay
        elif runs is not None:  # by the same scalar, stretch by stretch: no extra array read
            flat = p.reshape(-1)
            for start, end in runs:
                flat[start:end] *= 1.0 - self.lr * self.weight_decay
        else:
            p *= self.decay_factor(self._key, p.dtype)

    def init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Per-parameter buffers, made on first use; the scratch buffer avoids allocations."""
        return {}

    def update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as in PyTorch:

        v = momentum * v + g
        d = g + momentum * v   if nesterov else   v      (d = g without momentum)
        p = p - lr * d
    The tutorial's update is ``SGD(lr=1)``.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        super().__init__(lr, weight_decay, clip_norm, decay_all)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self._config = {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                        "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                        "decay_all": self.decay_all}

    def init_state(self, p):
        return {"velocity": np.zeros_like(p)} if self.momentum else {}

    def update(self, p, g, state):
        if self.momentum:
            v = state["velocity"]
            v *= self.momentum
            v += g
            if self.nesterov:
                g += self.momentum * v
            else:
                g = v
        if self.lr == 1.0:
            p -= g
        else:
            p -= self.lr * g


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011):

        s = s + g**2
        p = p - lr * g / (sqrt(s) + eps)
    """

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0,
                 clip_norm: float = 0.0, decay_all: bool = False) -> None:
        super().__init__(lr, weight_decay, clip_norm, decay_all)
        self.eps = _check("eps", eps, 0.0, low_open=True)
        self._config = {"lr": self.lr, "eps": self.eps, "weight_decay": self.weight_decay,
                        "clip_norm": self.clip_norm, "decay_all": self.decay_all}

    def init_state(self, p):
        return {"sum_sq": np.zeros_like(p), "scratch": np.empty_like(p)}

    def update(self, p, g, state):
        s, tmp = state["sum_sq"], state["scratch"]
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        p -= tmp


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e), as in PyTorch:

        s = rho * s + (1 - rho) * g**2
        p = p - lr * g / (sqrt(s) + eps)
    """

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        super().__init__(lr, weight_decay, clip_norm, decay_all)
        self.rho = _check("rho", rho, 0.0, 1.0)
        self.eps = _check("eps", eps, 0.0, low_open=True)
        self._config = {"lr": self.lr, "rho": self.rho, "eps": self.eps,
                        "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                        "decay_all": self.decay_all}

    def init_state(self, p):
        return {"mean_sq": np.zeros_like(p), "scratch": np.empty_like(p)}

    def update(self, p, g, state):
        s, tmp = state["mean_sq"], state["scratch"]
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rho
        s *= self.rho
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as in PyTorch; t counts steps from 1:

        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    ``weight_decay`` is L2 added to g; for decoupled decay use ``adamw``.

    Speed: the update is memory-bound (every pass reads and writes whole arrays as large as
    the network), so it is written as few passes over as few arrays as it can be. The state
    keeps the moments without their (1 - beta) factors,

        m_sum = beta1 * m_sum + g  (= m / (1 - beta1)),   v_sum = beta2 * v_sum + g**2,

    and those factors join the bias corrections in two scalars per step (``c1``, ``c2``
    below). That is 10 passes over p, g, m_sum and v_sum instead of 13 over them and a
    scratch array: a quarter to a third less time per step in the Fashion-MNIST benchmark,
    where Adam is the largest cost after the matrix products.
    ``moments(state)`` gives m and v as the paper (and PyTorch) define them.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        super().__init__(lr, weight_decay, clip_norm, decay_all)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.eps = _check("eps", eps, 0.0, low_open=True)
        self._config = {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                        "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                        "decay_all": self.decay_all}

    def init_state(self, p):
        return {"m_sum": np.zeros_like(p), "v_sum": np.zeros_like(p)}

    def moments(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(m, v) with the paper's scaling, from the state of one parameter."""
        return (1.0 - self.beta1) * state["m_sum"], (1.0 - self.beta2) * state["v_sum"]

    def update(self, p, g, state):
        m_sum, v_sum = state["m_sum"], state["v_sum"]
        b1, b2, t = self.beta1, self.beta2, self.iterations
        # With m = (1 - b1) m_sum and v = (1 - b2) v_sum, the step above is
        #   p -= lr * c1 * c2 * m_sum / (sqrt(v_sum) + eps * c2),
        #   c1 = (1 - b1) / (1 - b1**t),   c2 = sqrt((1 - b2**t) / (1 - b2)).
        c1 = (1.0 - b1) / (1.0 - b1**t)
        c2 = math.sqrt((1.0 - b2**t) / (1.0 - b2))
        m_sum *= b1
        m_sum += g
        np.multiply(g, g, out=g)  # g is scratch from here on (see the module docstring)
        v_sum *= b2
        v_sum += g
        np.sqrt(v_sum, out=g)
        g += self.eps * c2
        np.divide(m_sum, g, out=g)
        g *= self.lr * c1 * c2
        p -= g


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019):

        p = p - lr * weight_decay * p,  then the Adam update with the raw gradient.
    """

    decoupled_weight_decay = True

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm, decay_all)

    def update(self, p, g, state):
        self.decay_decoupled(p)
        super().update(p, g, state)
