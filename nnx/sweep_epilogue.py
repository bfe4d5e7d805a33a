"""What a sweep leaves when it ends: the epilogue in the terminal and, for a tracked sweep, the
parent run as a report (description and comparison plots).

Called in the launching process by ``nnx.sweep_callback`` (``on_multirun_end``, or its exit
hook when the sweep stopped early), for every sweeper and launcher:

    sweep 'spirals': 4 jobs, 4 finished; objective val_loss (minimize)
    rank  job  optimizer  model.activation  val_loss  val_accuracy  loss  status
       1  #2   adam       relu                0.1032        0.9667  0.0881  FINISHED
       ...
    best: #2 adam relu: val_loss 0.1032
    parent run: 5f0c...  compare: python -m nnx.compare --sweep 5f0c...
    MLflow UI: http://127.0.0.1:5000/#/experiments/1/runs/5f0c... (make ui starts it)

With ``tracking=none`` the rows come from the jobs' folders and the lines about the store are
left out.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from nnx import sweep_table as T
from nnx.ui_address import run_path, ui_line

MARK = "**Sweep of "  # how the parent's description nnx writes starts (Markdown, no comment:
#   the UI might show an HTML comment as text)
MAX_BOUNDARIES = 12  # decision-boundary panels in the parent's grid


def compare_command(parent_run_id: str, uri: str) -> str:
    """The command that compares this sweep's jobs (``--uri`` unless it is the default)."""
    from nnx.store import resolve_uri

    command = f"python -m nnx.compare --sweep {parent_run_id}"
    if uri != resolve_uri(None):
        command += f" --uri {shlex.quote(uri)}"
    return command


def lines(rows: list[T.Row], info: dict, header: list[str] = (), store: dict | None = None
          ) -> list[str]:
    """The epilogue. ``info``: name, objective, direction; ``store``: uri, experiment_id,
    parent_run_id (None for an untracked sweep); ``header``: the sweeper's own lines."""
    objective, direction = info.get("objective") or "objective", info.get("direction", "minimize")
    ranked = T.rank(rows, direction)
    counts: dict[str, int] = {}
    for row in ranked:
        counts[row.status.lower()] = counts.get(row.status.lower(), 0) + 1
    out = [f"sweep {info.get('name', '')!r}: {len(rows)} job{'' if len(rows) == 1 else 's'}, "
           + ", ".join(f"{n} {s}" for s, n in counts.items())
           + f"; objective {objective} ({direction})", *header]
    if ranked:
        out.append(T.text_table(ranked, objective))
    best = next((r for r in ranked if r.scored), None)
    out.append(f"best: {T.describe(best)}: {objective} {best.objective:.6g}" if best
               else "best: none (no job finished with a finite objective)")
    if store:
        parent, uri = store["parent_run_id"], store["uri"]
        out.append(f"parent run: {parent}")
        out.append(f"compare: {compare_command(parent, uri)}")
        out.append(ui_line(uri, store["experiment_id"], parent))
    return out


def description(rows: list[T.Row], info: dict, store: dict, earlier: str = "") -> str:
    """The parent run's Markdown description: the ranked table, a link to the best run, the
    compare command; ``earlier`` (the sweeper's own description) follows."""
    objective, direction = info.get("objective") or "objective", info.get("direction", "minimize")
    ranked = T.rank(rows, direction)
    best = next((r for r in ranked if r.scored), None)

    def link(row):
        return run_path(store["experiment_id"], row.run_id)

    text = [(f"{MARK}`{info.get('name', '')}`**: {len(rows)} jobs, objective "
             f"`{objective}` ({direction})."), ""]
    if best is not None:
        text += [(f"Best run: [{T.describe(best)}]({link(best)}): {objective} "
                  f"**{best.objective:.6g}**"), ""]
    else:
        text += ["Best run: none (no job finished with a finite objective).", ""]
    text += [T.markdown_table(ranked, objective, link), "",
             f"Compare: `{compare_command(store['parent_run_id'], store['uri'])}`"]
    if earlier and not earlier.startswith(MARK):
        text += ["", earlier]
    return "\n".join(text)


def boundary_grid(client, rows: list[T.Row], objective: str, path: Path) -> Path | None:
    """The children's decision-boundary plots side by side, best first (the spirals study's
    grid, for any sweep on 2-D data); None when no child has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    # MLflow draws a progress bar per download otherwise: noise in the epilogue.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    with tempfile.TemporaryDirectory(prefix="nnx-boundaries-") as tmp:
        for i, row in enumerate(rows[:MAX_BOUNDARIES]):
            if row.run_id is None or row.status not in ("FINISHED", "PRUNED"):
                continue
            try:
                local = client.download_artifacts(row.run_id, "plots/decision_boundary.png",
                                                  str(Path(tmp) / str(i)))
            except Exception:  # noqa: BLE001, S112 - plots off, or not 2-D data: no panel
                continue
            images.append((row, plt.imread(local)))
    if not images:
        return None
    n_cols = min(4, len(images))
    n_rows = -(-len(images) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.0 * n_rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (row, image) in zip(axes.ravel(), images):
        ax.imshow(image)
        value = "" if row.objective is None else f": {objective} {row.objective:.4g}"
        ax.set_title(f"{T.describe(row)}{value}", fontsize=9)
    fig.suptitle("decision boundaries, best first")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(client, rows: list[T.Row], info: dict, store: dict) -> None:
    """The parent's description, and its artifacts: runs.csv, runs.md, objective_vs_params.png,
    curves_<metric>.png (nnx.compare's report) and decision_boundaries.png."""
    from mlflow.entities import RunTag

    from nnx.run_metadata import MAX_TAG_VALUE, clip

    parent = store["parent_run_id"]
    earlier = client.get_run(parent).data.tags.get("mlflow.note.content", "")
    note = description(rows, info, store, earlier)
    client.log_batch(parent, tags=[RunTag("mlflow.note.content", clip(note, MAX_TAG_VALUE))])
    if not rows:
        return
    from nnx import compare

    with tempfile.TemporaryDirectory(prefix="nnx-sweep-report-") as tmp:
        try:
            table = compare.runs_table(sweep=parent, uri=store["uri"])
        except compare.CompareError:
            table = None
        if table is not None:
            compare.write_report(table, tmp, client)
        ranked = T.rank(rows, info.get("direction", "minimize"))
        boundary_grid(client, ranked, info.get("objective") or "objective",
                      Path(tmp) / "decision_boundaries.png")
        client.log_artifacts(parent, tmp)


def report(rows: list[T.Row], info: dict, header: list[str] = (), store: dict | None = None,
           client=None) -> None:
    """Print the epilogue; for a tracked sweep (``client``), write the parent's report first
    (a failure there is a warning: the epilogue still prints)."""
    if store and client is not None:
        try:
            write_report(client, rows, info, store)
        except Exception as error:  # noqa: BLE001 - the runs are stored either way
            print(f"nnx: warning: the sweep's report in MLflow failed: {type(error).__name__}: "
                  f"{error}", file=sys.stderr)
    print("\n".join(lines(rows, info, header, store)), flush=True)
