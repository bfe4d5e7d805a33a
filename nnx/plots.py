"""Pictures of a run: learning curves, weight and gradient histograms, decision boundaries,
confusion matrices, and sweep comparisons. Each function writes one PNG and returns its path
(given ``path=None``, it returns the matplotlib Figure instead: for tests and notebooks).
``RUN_PLOTS`` is the table of the pictures a tracked run logs at its end (``tracking.plots``
picks among them): for each, its artifact file, when it applies and how it is drawn.

Figures are drawn with ``matplotlib.figure.Figure`` on the Agg canvas directly: no pyplot, no
global backend switch, nothing that needs a display. Every axis is labelled, every figure is laid
out by matplotlib's constrained layout (no label or tick cut at the edge), and runs drawn together
get distinct colours however many they are (``run_colors``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # Constrained layout: labels, ticks and titles kept inside the figure (measured here: no
    # dearer than the default layout, ~0.35 s a two-panel figure either way).
    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def run_colors(n: int) -> list:
    """``n`` distinct colours: tab10 up to 10 runs, tab20 up to 20, else the turbo colormap
    sampled at ``n`` evenly spaced points (a 10-colour cycle would give two runs one colour)."""
    from matplotlib import colormaps

    if n <= 10:
        return list(colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(colormaps["tab20"].colors[:n])
    return [colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, n)]


def _save(fig, path: str | Path | None):
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def learning_curves(history: Sequence[Mapping[str, float]], path: str | Path | None,
                    title: str = "") -> Path:
    """Loss (and accuracy, when logged) per epoch, training beside validation.

    ``history`` is ``Trainer.history``: one dict per logged epoch with an ``epoch`` key.
    """
    if not history:
        raise ValueError("learning_curves: the history is empty (no epoch was logged)")
    epochs = np.array([row["epoch"] for row in history])
    panels = [("loss", ["loss", "val_loss"])]
    if any("accuracy" in row for row in history):
        panels.append(("accuracy", ["accuracy", "val_accuracy"]))
    fig = _figure(5.0 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, keys) in zip(axes, panels):
        for key in keys:
            values = np.array([row.get(key, np.nan) for row in history], dtype=float)
            if np.isfinite(values).any():
                keep = np.isfinite(values)
                ax.plot(epochs[keep], values[keep], label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if label == "loss" and np.nanmin([row.get("loss", np.nan) for row in history]) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def weight_histograms(network, path: str | Path | None, title: str = "", bins: int = 40) -> Path:
    """One row per layer with weights: the weight histogram beside the gradient histogram."""
    rows = [(i, layer) for i, layer in enumerate(network.layers) if layer.params]
    if not rows:
        raise ValueError("weight_histograms: the network has no parameters")
    fig = _figure(8.0, 2.3 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (i, layer), (ax_w, ax_g) in zip(rows, axes):
        for ax, arrays, what in ((ax_w, layer.params, "weights"), (ax_g, layer.grads, "gradients")):
            for key, values in arrays.items():
                flat = np.asarray(values, dtype=float).ravel()
                flat = flat[np.isfinite(flat)]
                if flat.size:  # stairs: one artist, where hist() draws one patch per bin
                    counts, edges = np.histogram(flat, bins=bins)
                    ax.stairs(counts, edges, fill=True, alpha=0.6, label=f"{key} ({flat.size})")
            ax.set_title(f"layer {i} {what}", fontsize=9)
            ax.set_xlabel("value", fontsize=8)
            ax.set_ylabel("count", fontsize=8)
            ax.legend(fontsize=7)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def decision_boundary(network, x: np.ndarray, labels: np.ndarray, path: str | Path | None,
                      threshold: float = 0.5, title: str = "", resolution: int = 200) -> Path:
    """The predicted class over the plane of a 2-D dataset, with the points on top."""
    from nnx.metrics import labels_from_outputs

    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2-D inputs (n, 2), got shape {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    margin = 0.15 * np.maximum(hi - lo, 1e-9)
    g0, g1 = np.meshgrid(np.linspace(lo[0] - margin[0], hi[0] + margin[0], resolution),
                         np.linspace(lo[1] - margin[1], hi[1] + margin[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()]).astype(network.dtype)
    predicted = labels_from_outputs(network.predict(grid), threshold).reshape(g0.shape)
    from matplotlib.colors import ListedColormap

    n_classes = int(max(predicted.max(), np.max(labels))) + 1
    cmap = ListedColormap(run_colors(n_classes))
    fig = _figure(5.0, 4.4)
    ax = fig.subplots()
    levels = np.arange(n_classes + 1) - 0.5
    ax.contourf(g0, g1, predicted, levels=levels, cmap=cmap, alpha=0.3)
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, s=14,
               edgecolors="k", linewidths=0.3)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title(title or "decision boundary")
    return _save(fig, path)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, path: str | Path | None,
                     title: str = "", n_classes: int | None = None) -> Path:
    """Counts of (true class, predicted class); rows are the truth."""
    true, predicted = np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    n = n_classes or int(max(true.max(initial=0), predicted.max(initial=0))) + 1
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    fig = _figure(1.2 + 0.45 * max(n, 4), 1.0 + 0.45 * max(n, 4))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.3f}", fontsize=10)
    return _save(fig, path)


def objective_vs_params(table, metric: str, params: Sequence[str], path: str | Path | None,
                        title: str = "") -> Path:
    """One panel per varied parameter: ``metric`` of every run against that parameter's value.

    Numeric parameters go on a number line; anything else is placed by category.
    """
    if not params:
        raise ValueError("objective_vs_params: no parameter varies between these runs")
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = _figure(4.2 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    y = table[metric].to_numpy(dtype=float)
    for ax, param in zip(axes, params):
        values = table[param]
        numeric = _as_numbers(values)
        if numeric is not None:
            ax.scatter(numeric, y, s=22)
            if np.all(numeric > 0) and numeric.max() / numeric.min() >= 100:
                ax.set_xscale("log")
        else:
            categories = sorted({str(v) for v in values})
            position = {c: i for i, c in enumerate(categories)}
            ax.scatter([position[str(v)] for v in values], y, s=22)
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} by parameter" + (f": {title}" if title else ""))
    return _save(fig, path)


def overlay_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], metric: str,
                   path: str | Path | None, title: str = "") -> Path:
    """Several runs' ``metric`` against epoch on one axis.

    ``curves`` maps a label to (steps, values).
    """
    if not curves:
        raise ValueError(f"overlay_curves: no run has a history of {metric!r}")
    fig = _figure(9.5, 4.4)
    ax = fig.subplots()
    positive = True
    for (label, (steps, values)), color in zip(curves.items(), run_colors(len(curves))):
        label = label if len(label) <= 48 else label[:47] + "…"
        ax.plot(steps, values, label=label, linewidth=1.2, color=color)
        positive = positive and bool(np.all(np.asarray(values) > 0))
    if positive and "loss" in metric:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{metric} per epoch" + (f": {title}" if title else ""))
    return _save(fig, path)


def _as_numbers(values) -> np.ndarray | None:
    """The values as floats when every one is a number (MLflow stores params as text)."""
    try:
        out = np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out).all() else None


# -- the pictures a tracked run logs at its end ----------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunPlot:
    """One picture of a run: ``artifact`` is its file among the run's artifacts,
    ``applies(dataset)`` says whether the run's data allows it (the dataset may be None), and
    ``draw(trainer, dataset, path, title)`` writes it to ``path``."""

    artifact: str
    applies: Callable
    draw: Callable


def _always(ds) -> bool:
    return True


def _classification(ds) -> bool:
    return ds is not None and ds.task == "classification"


def _plane_classification(ds) -> bool:
    return _classification(ds) and ds.n_features == 2


def _draw_curves(trainer, ds, path, title: str) -> Path:
    return learning_curves(trainer.history, path, title)


def _draw_histograms(trainer, ds, path, title: str) -> Path:
    return weight_histograms(trainer.network, path, f"{title} epoch {trainer.epoch}")


def _draw_confusion(trainer, ds, path, title: str) -> Path:
    """On the test set, else on the training set."""
    from nnx.metrics import labels_from_outputs, labels_from_targets

    x, y = (ds.x_test, ds.y_test) if ds.x_test is not None else (ds.x_train, ds.y_train)
    predicted = labels_from_outputs(trainer.network.predict(x), trainer.config.decision_threshold)
    split = "test" if ds.x_test is not None else "train"
    return confusion_matrix(labels_from_targets(y), predicted, path, f"{title} ({split})",
                            ds.n_classes)


def _draw_boundary(trainer, ds, path, title: str) -> Path:
    """Over the training and test points together."""
    from nnx.metrics import labels_from_targets

    x = ds.x_train if ds.x_test is None else np.vstack([ds.x_train, ds.x_test])
    y = ds.y_train if ds.y_test is None else np.concatenate(
        [labels_from_targets(ds.y_train), labels_from_targets(ds.y_test)])
    return decision_boundary(trainer.network, x, labels_from_targets(y), path,
                             trainer.config.decision_threshold, f"{title}: decision boundary")


# name (a value of tracking.plots) -> the picture, in the order they are drawn.
RUN_PLOTS: dict[str, RunPlot] = {
    "curves": RunPlot("plots/learning_curves.png", _always, _draw_curves),
    "histograms": RunPlot("plots/histograms/final.png", _always, _draw_histograms),
    "confusion": RunPlot("plots/confusion_matrix.png", _classification, _draw_confusion),
    "boundary": RunPlot("plots/decision_boundary.png", _plane_classification, _draw_boundary),
}
