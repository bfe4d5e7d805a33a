"""The CNN study's validation table, from select.sh's store: for each run, its augmentation and
epochs, the best validation accuracy and the epoch it came at (the weights each run kept), and
its training minutes. Writes ``selection.md`` into ``--out``. Test metrics are not read.

    python experiments/fashion_mnist_cnn/selection.py --uri sqlite:///<select.db> --out results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow.tracking import MlflowClient


def history(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


def describe(client, run) -> dict:
    layers = json.loads(run.data.params.get("model.layers", "[]"))
    shifts = [layer.get("max_shift") for layer in layers
              if isinstance(layer, dict) and layer.get("name") == "random_shift"]
    val = history(client, run.info.run_id, "val/accuracy")
    best = max(val, key=lambda m: (m.value, -m.step))  # the first epoch of the best value
    seconds = sum(m.value for m in history(client, run.info.run_id, "time/epoch_seconds"))
    return {"shift": shifts[0] if shifts else 0, "epochs": len(val), "best": best.value,
            "best_epoch": best.step, "last": val[-1].value, "minutes": seconds / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, action="append", help="a store (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--experiment", default="fashion_mnist_cnn_select")
    args = parser.parse_args()
    rows = []
    for uri in args.uri:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(args.experiment)
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        rows += [describe(client, run) for run in runs]
    rows.sort(key=lambda r: -r["best"])
    header = ("| random shift (pixels) | epochs | best validation accuracy | at epoch | "
              "last epoch's | training minutes |")
    lines = [header, "|---|---|---|---|---|---|"]
    lines += [f"| {r['shift']} | {r['epochs']} | {r['best']:.4f} | {r['best_epoch']} | "
              f"{r['last']:.4f} | {r['minutes']:.1f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
