"""Loss functions: ``forward(pred, target) -> float`` and ``backward() -> dL/dpred``.

Every loss is the *mean* over the batch (and over output units) unless its docstring says
otherwise; the tutorial's sum of squares keeps its sum. Targets have the shape of the
predictions, except ``softmax_cross_entropy``, which also takes integer class labels.

Each loss declares what it takes, so that the experiment (output size, target encoding,
decision threshold) and the test kit read the declaration instead of guessing from the name,
and a plugin loss with the same contract is treated the same:
- ``targets``: the target encodings it accepts, preferred first, from ``TARGET_KINDS``;
- ``inputs``: ``"logits"`` (any real number, a squashing is fused in), ``"probabilities"``
  (values in ``input_range``, e.g. from a sigmoid or softmax output) or ``"values"``;
- ``input_range``: the open interval its predictions must lie in.
"""

from __future__ import annotations

import numpy as np

from nnx.activations import stable_sigmoid

# Target encodings a loss can declare, and what each means for a classification dataset.
TARGET_KINDS = {
    "labels": "integer class per row, shape (n,); the output has one column per class",
    "one_hot": "one indicator row per sample, shape (n, C); one column per class",
    "probabilities": "rows of non-negative numbers summing to 1, shape (n, C) (one-hot fits)",
    "binary": "0/1 per output column: one column for two classes, one-hot columns for more",
    "values": "real-valued targets of the output's shape (regression)",
}
INPUT_KINDS = ("logits", "probabilities", "values")


class Loss:
    """Base class: checks shapes, keeps what backward needs, declares what it takes."""

    targets: tuple[str, ...] = ("values", "binary")
    inputs: str = "values"
    input_range: tuple[float, float] = (-np.inf, np.inf)

    @property
    def decision_threshold(self) -> float:
        """Single-output classification: class 1 when the output is above this.

        0 for logits (sigmoid(0) = 0.5), 0.5 for probabilities and 0/1-valued regressions.
        """
        return 0.0 if self.inputs == "logits" else 0.5

    def __init__(self) -> None:
        self._config = {}

    def config(self) -> dict:
        return dict(self._config)

    def _check(self, pred: np.ndarray, target: np.ndarray) -> None:
        if pred.ndim != 2:
            raise ValueError(f"{type(self).__name__}: predictions must be 2-D (n, k), got {pred.shape}")
        if target.shape != pred.shape:
            raise ValueError(
                f"{type(self).__name__}: target shape {target.shape} does not match "
                f"predictions {pred.shape}"
            )

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, pred, target) -> float:
        return self.forward(pred, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"


class SumSquaredError(Loss):
    """L = sum((pred - target)**2), summed (not averaged) as in the tutorial; dL/dpred = 2 (pred - target)."""

    def forward(self, pred, target):
        self._check(pred, target)
        self._diff = pred - target
        return float(np.vdot(self._diff, self._diff))  # sum of squares, one BLAS call

    def backward(self):
        return 2.0 * self._diff


class MeanSquaredError(Loss):
    """L = mean((pred - target)**2) over all n*k entries; dL/dpred = 2 (pred - target) / (n k)."""

    def forward(self, pred, target):
        self._check(pred, target)
        self._diff = pred - target
        return float(np.vdot(self._diff, self._diff)) / self._diff.size

    def backward(self):
        return (2.0 / self._diff.size) * self._diff


class MeanAbsoluteError(Loss):
    """L = mean(|pred - target|); dL/dpred = sign(pred - target) / (n k) (0 at the kink)."""

    def forward(self, pred, target):
        self._check(pred, target)
        self._diff = pred - target
        return float(np.mean(np.abs(self._diff)))

    def backward(self):
        return np.sign(self._diff) / self._diff.size


class Huber(Loss):
    """L = mean(0.5 d**2 if |d| <= delta else delta (|d| - 0.5 delta)), d = pred - target.

    dL/dpred = clip(d, -delta, delta) / (n k). Quadratic near 0, linear for outliers.
    """

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if not delta > 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        self.delta = float(delta)
        self._config = {"delta": self.delta}

    def forward(self, pred, target):
        self._check(pred, target)
        d = self._diff = pred - target
        a = np.abs(d)
        per = np.where(a <= self.delta, 0.5 * d**2, self.delta * (a - 0.5 * self.delta))
        return float(np.mean(per))

    def backward(self):
        return np.clip(self._diff, -self.delta, self.delta) / self._diff.size


class BinaryCrossEntropy(Loss):
    """L = -mean(t log p + (1 - t) log(1 - p)) on probabilities p, clipped to [eps, 1 - eps].

    dL/dp = (p - t) / (p (1 - p)) / (n k). Prefer ``binary_cross_entropy_with_logits``.
    """

    targets = ("binary",)
    inputs = "probabilities"
    input_range = (0.0, 1.0)

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.eps = float(eps)
        self._config = {"eps": self.eps}

    def forward(self, pred, target):
        self._check(pred, target)
        self._p = np.clip(pred, self.eps, 1.0 - self.eps)
        self._t = target
        p, t = self._p, target
        return float(-np.mean(t * np.log(p) + (1.0 - t) * np.log1p(-p)))

    def backward(self):
        p, t = self._p, self._t
        return ((p - t) / (p * (1.0 - p)) / p.size).astype(p.dtype, copy=False)


class BinaryCrossEntropyWithLogits(Loss):
    """Binary cross-entropy on logits z: L = mean(max(z, 0) - z t + log(1 + exp(-|z|))).

    dL/dz = (sigmoid(z) - t) / (n k). Fused so that no probability is ever rounded to 0 or 1.
    """

    targets = ("binary",)
    inputs = "logits"

    def forward(self, pred, target):
        self._check(pred, target)
        self._z, self._t = pred, target
        z = pred
        return float(np.mean(np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))))

    def backward(self):
        return (stable_sigmoid(self._z) - self._t) / self._z.size


class SoftmaxCrossEntropy(Loss):
    """Softmax then cross-entropy, fused, on logits z (n, C):

    L = mean over the batch of -sum_c t_c log softmax(z)_c,   dL/dz = (softmax(z) - t) / n.
    Fused because the separate Jacobians cancel to this simple form, and because
    log-softmax = z - logsumexp(z) never takes the log of an underflowed 0.
    Targets: one-hot / probability rows (n, C), or integer labels (n,).

    ``label_smoothing`` e (Szegedy et al. 2016) trains towards t' = (1 - e) t + e / C instead
    of t: the right class keeps 1 - e + e / C, every class gets e / C, so a confident network is
    never pushed to infinite logits (as ``torch.nn.CrossEntropyLoss(label_smoothing=e)``).
    It applies wherever this loss is computed, validation and test losses too; accuracy is
    untouched. 0 (the default) is plain cross-entropy.
    """

    targets = ("labels", "one_hot", "probabilities")
    inputs = "logits"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        try:
            smoothing = float(label_smoothing)
        except (TypeError, ValueError):
            smoothing = float("nan")
        if not 0.0 <= smoothing <= 1.0:  # also refuses nan
            raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = smoothing
        self._config = {"label_smoothing": smoothing}

    def forward(self, pred, target):
        if pred.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy: logits must be 2-D (n, C), got {pred.shape}")
        n, classes = pred.shape
        # A batch is small ((128, 10) on Fashion-MNIST): each NumPy call costs more than its
        # arithmetic, so this is as few calls as it can be, in place where possible, and
        # means are sums / n (np.mean has ~10 us of Python around it).
        shifted = pred - pred.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        total = probs.sum(axis=1, keepdims=True)
        probs /= total
        self._probs = probs
        log_probs_norm = np.log(total)
        if target.ndim == 1:
            if target.shape[0] != n:
                raise ValueError(f"SoftmaxCrossEntropy: {target.shape[0]} labels for {n} rows")
            if target.size and (target.min() < 0 or target.max() >= classes):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels must be in [0, {classes}), "
                    f"got values in [{target.min()}, {target.max()}]"
                )
            self._labels, self._t = target.astype(np.intp, copy=False), None
            picked = float(shifted[np.arange(n), self._labels].sum())
            e = self.label_smoothing
            if e:  # -sum_c t'_c log p_c = lognorm - (1 - e) z_label - e mean_c z_c (z shifted)
                picked = (1.0 - e) * picked + e * float(shifted.sum()) / classes
            return (float(log_probs_norm.sum()) - picked) / n
        self._check(pred, target)
        self._labels, self._t = None, target
        if self.label_smoothing:
            self._t = (1.0 - self.label_smoothing) * target + self.label_smoothing / classes
        return float(-np.sum(self._t * (shifted - log_probs_norm)) / n)

    def backward(self):
        n, classes = self._probs.shape
        if self._labels is not None:
            grad = self._probs.copy()  # backward may be called again; keep the cache intact
            e = self.label_smoothing
            if e:
                grad -= e / classes
            grad[np.arange(n), self._labels] -= 1.0 - e
        else:
            grad = self._probs - self._t
        grad /= n
        return grad
