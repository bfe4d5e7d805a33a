"""The CNN study's validation tables, from the store of one of its rounds (select.sh,
regularise.sh, erasing.sh, deeper.sh): for each run, its convolutions, augmentation, dropout,
label smoothing, optimizer and epochs, the best validation accuracy and the epoch it came at
(the weights each run kept), and its training minutes. Writes ``<name>.md`` into ``--out``.
Test metrics are not read.

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
    names = [layer if isinstance(layer, str) else layer.get("name") for layer in layers]

    def settings(name: str, key: str) -> list:
        """(position, layer[key]) of every ``name`` layer written with its arguments."""
        return [(i, layer[key]) for i, layer in enumerate(layers)
                if names[i] == name and isinstance(layer, dict) and key in layer]

    shifts = [v for _, v in settings("random_shift", "max_shift")]
    erasing = [v for _, v in settings("random_erasing", "p")]
    # dropout rates before flatten (after the convolution blocks) and after it (the head)
    flat = names.index("flatten") if "flatten" in names else len(names)
    rates = settings("dropout", "rate")
    blocks = sorted({rate for i, rate in rates if i < flat}) or [0]
    head = sorted({rate for i, rate in rates if i > flat}) or [0]
    convolutions = names.count("conv2d")
    params = run.data.params
    smoothing = float(params.get("loss.label_smoothing", 0) or 0)
    optimizer = params.get("optimizer.name", "?")
    if float(params.get("optimizer.weight_decay", 0) or 0):
        optimizer += f" (weight decay {float(params['optimizer.weight_decay']):g})"
    val = history(client, run.info.run_id, "val/accuracy")
    best = max(val, key=lambda m: (m.value, -m.step))  # the first epoch of the best value
    seconds = sum(m.value for m in history(client, run.info.run_id, "time/epoch_seconds"))
    return {"shift": shifts[0] if shifts else 0, "erasing": float(erasing[0]) if erasing else 0.0,
            "blocks": "/".join(f"{r:g}" for r in blocks), "head": "/".join(f"{r:g}" for r in head),
            "optimizer": optimizer, "smoothing": smoothing, "convolutions": convolutions,
            "epochs": len(val), "best": best.value, "best_epoch": best.step,
            "last": val[-1].value, "minutes": seconds / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, action="append", help="a store (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--experiment", default="fashion_mnist_cnn_select")
    parser.add_argument("--name", default="selection", help="the table's file name, no .md")
    args = parser.parse_args()
    rows = []
    for uri in args.uri:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(args.experiment)
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        rows += [describe(client, run) for run in runs]
    rows.sort(key=lambda r: -r["best"])
    header = ("| convolutions | random shift (pixels) | random erasing (p) | dropout after each "
              "block | dropout before the last layer | label smoothing | optimizer | epochs | best "
              "validation accuracy | at epoch | last epoch's | training minutes |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['convolutions']} | {r['shift']} | {r['erasing']:g} | {r['blocks']} | "
              f"{r['head']} | {r['smoothing']:g} | {r['optimizer']} | {r['epochs']} | "
              f"{r['best']:.4f} | {r['best_epoch']} | {r['last']:.4f} | {r['minutes']:.1f} |"
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
