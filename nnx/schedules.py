"""Learning-rate schedules: ``schedule(epoch, epochs) -> factor``; each epoch the trainer sets
``optimizer.lr = optimizer.config()["lr"] * factor`` (``Trainer.learning_rate``).

``epoch`` counts from 0; ``epochs`` is the length of the run (cosine needs it).
"""

from __future__ import annotations

import math


class Schedule:
    """Base class of schedules."""

    def __init__(self) -> None:
        self._config = {}

    def config(self) -> dict:
        return dict(self._config)

    def __call__(self, epoch: int, epochs: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    """factor = 1."""

    def __call__(self, epoch, epochs):
        return 1.0


class StepDecay(Schedule):
    """factor = gamma ** (epoch // step_size)."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1) -> None:
        super().__init__()
        if not (isinstance(step_size, int) and step_size > 0):
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.step_size, self.gamma = step_size, float(gamma)
        self._config = {"step_size": step_size, "gamma": self.gamma}

    def __call__(self, epoch, epochs):
        return self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """factor = gamma ** epoch."""

    def __init__(self, gamma: float = 0.95) -> None:
        super().__init__()
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.gamma = float(gamma)
        self._config = {"gamma": self.gamma}

    def __call__(self, epoch, epochs):
        return self.gamma**epoch


class Cosine(Schedule):
    """factor = min_factor + (1 - min_factor) (1 + cos(pi epoch / epochs)) / 2 (Loshchilov & Hutter 2017)."""

    def __init__(self, min_factor: float = 0.0) -> None:
        super().__init__()
        if not 0 <= min_factor <= 1:
            raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
        self.min_factor = float(min_factor)
        self._config = {"min_factor": self.min_factor}

    def __call__(self, epoch, epochs):
        progress = epoch / max(epochs, 1)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class LinearWarmup(Schedule):
    """factor = (epoch + 1) / warmup_epochs during warm-up, then 1 ("constant") or a cosine decay
    over the remaining epochs ("cosine")."""

    def __init__(self, warmup_epochs: int = 5, then: str = "constant") -> None:
        super().__init__()
        if not (isinstance(warmup_epochs, int) and warmup_epochs > 0):
            raise ValueError(f"warmup_epochs must be a positive integer, got {warmup_epochs!r}")
        if then not in ("constant", "cosine"):
            raise ValueError(f"then must be 'constant' or 'cosine', got {then!r}")
        self.warmup_epochs, self.then = warmup_epochs, then
        self._config = {"warmup_epochs": warmup_epochs, "then": then}

    def __call__(self, epoch, epochs):
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        if self.then == "cosine":
            return Cosine()(epoch - self.warmup_epochs, epochs - self.warmup_epochs)
        return 1.0
