"""Divergence caught early: a loss that grows far past its first value stops the run.

NaN and inf are caught by the trainer itself, batch by batch. A loss can also blow up and stay
finite (Adam at lr=1e30 ends at 1e29): this callback compares each epoch's mean training loss
with the run's first batch loss, measured before any update, and stops the run, FAILED, with
the trainer's divergence message once

    loss > factor * first_loss          (factor: trainer.divergence_factor, default 1e4; 0 = off)

The first loss travels in checkpoints, so a resumed run compares with the same value. A loss
that starts at 0 or below (a plugin's log-likelihood, say) has no scale to compare with: the
check is off for that run.
"""

from __future__ import annotations

import math

from nnx.trainer import Callback

DEFAULT_FACTOR = 1.0e4


class DivergenceGuard(Callback):
    """Raise the trainer's NonFiniteError when the epoch's loss passes ``factor`` x the first."""

    def __init__(self, factor: float = DEFAULT_FACTOR) -> None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise ValueError(f"trainer.divergence_factor must be a number > 1 (0 turns the "
                             f"check off), got {factor!r}")
        self.factor = float(factor)
        self.reference: float | None = None

    def state(self):
        return {"reference": self.reference}

    def load_state(self, state):
        value = state.get("reference")
        self.reference = None if value is None else float(value)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.reference is None:
            self.reference = trainer.initial_loss
        loss, reference = logs.get("loss"), self.reference
        if loss is None or reference is None or not reference > 0 or not math.isfinite(loss):
            return
        if loss > self.factor * reference:
            trainer._check_finite(
                epoch, None, f"the loss {loss:.4g} is more than trainer.divergence_factor="
                f"{self.factor:g} times its first value {reference:.4g} (set "
                "trainer.divergence_factor=0 to turn this check off)", step_done=True)
