"""Lion, an optimizer registered as ``lion`` in the ``nnx.optimizers`` group."""

from __future__ import annotations

import numbers

import numpy as np
from nnx.optimizers import Optimizer


def _beta(name: str, value) -> float:
    """A momentum coefficient in [0, 1), or a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


class Lion(Optimizer):
    """Lion, evolved sign momentum (Chen et al. 2023, arXiv:2302.06675):

        c = beta1 * m + (1 - beta1) * g
        p = p - lr * (sign(c) + weight_decay * p)
        m = beta2 * m + (1 - beta2) * g
    Every coordinate moves by exactly lr per step (before decay), so lr is 3-10x smaller than
    AdamW's and weight_decay 3-10x larger. Weight decay is decoupled, as in AdamW, and skips
    biases and normalisation scales (the layers' decay flags) unless ``decay_all``.
    """

    decoupled_weight_decay = True

    def __init__(self, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
                 weight_decay: float = 0.0, clip_norm: float = 0.0,
                 decay_all: bool = False) -> None:
        # checks lr, weight_decay, clip_norm, decay_all
        super().__init__(lr, weight_decay, clip_norm, decay_all)
        self.beta1 = _beta("beta1", beta1)
        self.beta2 = _beta("beta2", beta2)
        self._config = {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
                        "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                        "decay_all": self.decay_all}

    def init_state(self, p):
        return {"m": np.zeros_like(p), "scratch": np.empty_like(p)}

    def update(self, p, g, state):
        # In place, with one scratch buffer: the network passes all parameters as one array.
        m, c = state["m"], state["scratch"]
        np.subtract(g, m, out=c)
        c *= 1.0 - self.beta1
        c += m  # c = beta1 * m + (1 - beta1) * g
        # p *= 1 - lr * weight_decay where decay applies (not biases or scales; see nnx's
        # Optimizer.decay_decoupled): the network's decay flags are honoured as AdamW does.
        self.decay_decoupled(p)
        np.sign(c, out=c)
        c *= self.lr
        p -= c
        np.subtract(g, m, out=c)
        c *= 1.0 - self.beta2
        m += c  # m = beta2 * m + (1 - beta2) * g

