"""Decision boundaries of every spirals run side by side: rows = activation, columns = optimizer.

Reads each run's ``plots/decision_boundary.png`` artifact from the study's MLflow store.
"""

from __future__ import annotations

import argparse
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from nnx.metrics import user_metrics  # stored keys (test/accuracy) or an older store's flat names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--experiment", default="spirals")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    client = MlflowClient(args.uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if "model.activation" in r.data.params and r.info.status == "FINISHED"]
    activations = sorted({r.data.params["model.activation"] for r in runs})
    optimizers = sorted({r.data.params["optimizer.name"] for r in runs})
    fig, axes = plt.subplots(len(activations), len(optimizers),
                             figsize=(3.2 * len(optimizers), 2.9 * len(activations)), squeeze=False)
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            row = activations.index(run.data.params["model.activation"])
            col = optimizers.index(run.data.params["optimizer.name"])
            image = client.download_artifacts(run.info.run_id, "plots/decision_boundary.png", tmp)
            ax = axes[row][col]
            ax.imshow(plt.imread(image))
            accuracy = user_metrics(run.data.metrics).get("test_accuracy", float("nan"))
            ax.set_title(f"{run.data.params['model.activation']} + "
                         f"{run.data.params['optimizer.name']}: {accuracy:.3f}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("spirals: decision boundaries (test accuracy)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
