"""The search benchmark's summary: epochs trained and best validation accuracy, with and
without pruning, from the two Optuna studies that ``run.sh`` stores (and their MLflow runs).

    python experiments/search/report.py --storage journal://<file> --uri sqlite:///<db> \\
        --out summary.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from nnx.metrics import user_metrics  # stored keys (test/accuracy) or an older store's flat names
from nnx.optuna_sweeper import open_storage

SEARCHES = ("unpruned", "pruned")


def epochs_trained(trial) -> int:
    """Epochs a trial ran: its last reported epoch (each epoch is reported, log_every=1)."""
    return max(trial.intermediate_values) if trial.intermediate_values else 0


def test_accuracy(client, experiment: str, number: int) -> float | None:
    """test_accuracy of trial ``number``'s MLflow run in ``experiment``, if tracked."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.trial = '{number}'")
    return user_metrics(runs[0].data.metrics).get("test_accuracy") if runs else None


def summary(storage: str, uri: str) -> str:
    client = MlflowClient(uri)
    rows = {}
    for search in SEARCHES:
        study = optuna.load_study(study_name=f"search_{search}", storage=open_storage(storage))
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name.lower() for t in trials]
        best = study.best_trial
        rows[search] = {"trials": len(trials), "complete": states.count("complete"),
                        "pruned": states.count("pruned"), "failed": states.count("fail"),
                        "epochs": sum(epochs_trained(t) for t in trials),
                        "best": best.value, "best_trial": best.number,
                        "test": test_accuracy(client, f"search_{search}", best.number)}
    base, pruned = rows["unpruned"], rows["pruned"]
    lines = [("| search | trials | complete | pruned | failed | epochs trained | best objective "
             "(trial) | its test accuracy |"), "|---|---|---|---|---|---|---|---|"]
    for search, r in rows.items():
        test = f"{r['test']:.4f}" if r["test"] is not None else "not tracked"
        lines.append(f"| {search} | {r['trials']} | {r['complete']} | {r['pruned']} | "
                     f"{r['failed']} | {r['epochs']} | {r['best']:.4f} ({r['best_trial']}) | "
                     f"{test} |")
    share = pruned["epochs"] / base["epochs"]
    gap = 100 * (base["best"] - pruned["best"])
    lines += ["", (f"Pruned search: {share:.0%} of the unpruned search's epochs (target <= 60%: "
              f"{'met' if share <= 0.60 else 'NOT met'}); best objective (val_accuracy) "
              f"{gap:+.2f} points below it (target within 0.3: "
              f"{'met' if gap <= 0.3 else 'NOT met'}).")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    text = summary(args.storage, args.uri)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
