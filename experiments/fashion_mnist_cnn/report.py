"""The CNN study's report: the CNN and the MLP side by side, from the study's MLflow store.

Writes into ``--out``: ``summary.md`` (accuracy, parameters, epochs, minutes of each run),
``confusion.png`` (both test-set confusion matrices, row-normalised) and ``filters.png`` (the
CNN's first-layer 3x3 filters). The networks are the ones the runs logged as MLflow models;
the test set is the official one, scored once here for the pictures (the accuracies in the
table are the runs' own ``test_accuracy``, which must agree with it).

    python experiments/fashion_mnist_cnn/report.py --uri sqlite:///<db> --out results
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a report, not a download

import argparse
import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from mlflow.tracking import MlflowClient

from nnx.network_files import load_network
from nnx.registry import build

RUNS = {"CNN": "fashion_mnist_cnn", "MLP": "fashion_mnist_best"}
CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Boot"]


def metric(run, name: str) -> float:
    """A run's final ``name`` (``test_accuracy``), under the flat name or the sectioned key."""
    section, _, rest = name.partition("_")
    for key in (name, f"{section}/{rest}"):
        if key in run.data.metrics:
            return run.data.metrics[key]
    return float("nan")


def validated(run) -> str:
    """The validation accuracy of the weights kept, or why there is none."""
    value = metric(run, "val_accuracy")
    return "(none: trains on all 60,000)" if math.isnan(value) else f"{value:.4f}"


def seconds(client, run) -> float:
    """Training seconds: the sum of the logged per-epoch times."""
    for key in ("epoch_seconds", "time/epoch_seconds"):
        history = client.get_metric_history(run.info.run_id, key)
        if history:
            return sum(m.value for m in history)
    return float("nan")


def latest_run(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit(f"no FINISHED run in experiment {experiment!r}: run run.sh first")
    return runs[0]


def logged_network(run, tmp: str, uri: str):
    """The network the run logged as its MLflow model (``runs:/<id>/model``, a logged model)."""
    import mlflow

    mlflow.set_tracking_uri(uri)  # runs:/<id>/model names a logged model: found via the store
    folder = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run.info.run_id}/model", dst_path=tmp))
    return load_network(next(folder.rglob("network.json")).parent)


def confusion(network, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    predicted = np.concatenate([network.predict(x[i:i + 1000]).argmax(1)
                                for i in range(0, len(x), 1000)])
    counts = np.zeros((10, 10))
    np.add.at(counts, (y, predicted), 1)
    return counts


def draw_confusions(matrices: dict[str, np.ndarray], path: Path) -> None:
    fig, axes = plt.subplots(1, len(matrices), figsize=(6.4 * len(matrices), 5.6),
                             layout="constrained")
    for ax, (label, counts) in zip(axes, matrices.items()):
        accuracy = np.trace(counts) / counts.sum()
        image = ax.imshow(counts / counts.sum(1, keepdims=True), vmin=0, vmax=1, cmap="Blues")
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, int(n), ha="center", va="center", fontsize=7,
                        color="white" if n > 0.5 * counts[i].sum() else "black")
        ax.set_xticks(range(10), CLASSES, rotation=45, ha="right")
        ax.set_yticks(range(10), CLASSES)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{label}: test accuracy {accuracy:.4f}")
    fig.colorbar(image, ax=axes, label="fraction of the true class")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_filters(network, path: Path) -> None:
    """The first convolution's kernels, each on its own symmetric colour scale."""
    weights = next(w for key, w in network.named_params().items()
                   if key.endswith(".W") and w.ndim == 4)  # (out, in, kh, kw): the first conv
    kernels = weights[:, 0]  # one input channel: grey images
    cols = 8
    rows = -(-len(kernels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows + 0.6),
                             layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(kernels):
            limit = np.abs(kernels[k]).max()
            ax.imshow(kernels[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(str(k), fontsize=8)
    fig.suptitle("first convolution's 3x3 filters (red +, blue -)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(args.uri)
    data = build("datasets", "fashion_mnist", download=False).load(np.random.default_rng(0),
                                                                   np.float32)
    header = ("| network | parameters | epochs | training minutes | validation accuracy "
              "| test accuracy |")
    lines = [header, "|---|---|---|---|---|---|"]
    matrices = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, experiment in RUNS.items():
            run = latest_run(client, experiment)
            network = logged_network(run, f"{tmp}/{label}", args.uri)
            x = data.x_test.reshape(len(data.x_test), *network.in_shape)
            matrices[label] = confusion(network, x, data.y_test)
            if label == "CNN":
                draw_filters(network, args.out / "filters.png")
            params = network.n_params
            lines.append(f"| {label} ({experiment}) | {params:,} | "
                         f"{run.data.params.get('trainer.epochs')} | "
                         f"{seconds(client, run) / 60:.1f} | {validated(run)} | "
                         f"{metric(run, 'test_accuracy'):.4f} |")
    draw_confusions(matrices, args.out / "confusion.png")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
