"""The tracker interface the trainer talks to, and the null tracker.

The trainer never imports mlflow: it calls these few methods. The MLflow tracker
(``nnx.mlflow_tracker``) implements them; ``NullTracker`` ignores everything.
"""

from __future__ import annotations

from pathlib import Path


class Tracker:
    """What a trainer reports: params once, metrics per epoch (or step), files, a final status."""

    def start(self, config: dict, trainer, dataset) -> None:
        """Open the run: record the config, tags and anything known before training."""

    def log_params(self, params: dict) -> None:
        pass

    def set_tags(self, tags: dict) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_dataset(self, name: str, splits: dict) -> None:
        """The data the run trains on: ``splits`` maps a context (``training``,
        ``validation``, ``test``) to ``(x, y)``, or None where the run has no such split."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_checkpoint(self, path: str | Path) -> None:
        """A checkpoint just written (uploaded at once, so a crashed run can be resumed)."""

    def log_network(self, network, epoch: int | None = None) -> None:
        """Weights snapshots and the final model; the null tracker drops them."""

    def flush(self) -> None:
        pass

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Close the run: FINISHED, FAILED (with ``error``) or KILLED."""


class NullTracker(Tracker):
    """Tracks nothing (``tracking=none``)."""
