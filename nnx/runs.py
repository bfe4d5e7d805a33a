"""``python -m nnx.runs``: the runs of a store, with the ones that died RUNNING flagged; closing
them; writing a run's spool into its store.

    python -m nnx.runs                       # recent runs: status, heartbeat, host and pid
    python -m nnx.runs reap                  # mark stale RUNNING runs KILLED, with the reason
    python -m nnx.runs sync outputs/2026-12-01/09-41-07   # a run folder's spool into the store

Options: ``--uri`` (default: $NNX_TRACKING_URI, else the project's ``mlflow.db``),
``--experiment NAME``, ``--limit N`` (runs listed, newest first, default 50) and
``--stale-after SECONDS`` (default: 4 missed heartbeats of each run, see ``nnx.heartbeat``).
``reap`` never closes a run whose heartbeat is recent, nor one whose process is alive on this
machine. ``sync`` is idempotent: a second sync writes nothing twice.
Exit status: 0, or 2 with one line when the store or the folder cannot be used.
"""

from __future__ import annotations

import argparse
import sys
import time

from nnx.heartbeat import alive_here, is_stale, last_beat, stale_after, when


def _client(uri: str | None):
    from nnx.store import open_store, resolve_uri

    uri = resolve_uri(uri)
    return open_store(uri), uri


def find_runs(client, experiment: str | None = None, limit: int = 50,
              status: str | None = None) -> list:
    """Runs of ``experiment`` (all experiments when None), newest first."""
    from nnx.store import TrackingError

    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise TrackingError(f"no experiment {experiment!r} in {client.tracking_uri}")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    where = f"attributes.status = '{status}'" if status else ""
    return list(client.search_runs(ids, where, max_results=limit,
                                   order_by=["attributes.start_time DESC"]))


def status_of(run, now: float, override: float | None = None) -> str:
    """The run's status, ``STALE`` for a RUNNING run whose heartbeat stopped."""
    return "STALE" if is_stale(run, now, override) else run.info.status


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def list_runs(client, args) -> str:
    now = time.time()
    runs = find_runs(client, args.experiment, args.limit)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    rows = [("run_id", "experiment", "run_name", "status", "heartbeat", "host:pid")]
    for run in runs:
        beat = last_beat(run)
        tags = run.data.tags
        rows.append((run.info.run_id, names.get(run.info.experiment_id, "?"),
                     run.info.run_name or "", status_of(run, now, args.stale_after),
                     _age(now - beat) if beat is not None else "-",
                     f"{tags['nnx.host']}:{tags.get('nnx.pid', '?')}" if "nnx.host" in tags
                     else "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    stale = sum(1 for r in rows[1:] if r[3] == "STALE")
    if stale:
        lines.append(f"{stale} stale: RUNNING in the store, but no heartbeat for longer than "
                     "allowed (the process died). `python -m nnx.runs reap` marks them KILLED.")
    return "\n".join(lines)


def reap(client, args) -> str:
    """Mark every stale RUNNING run KILLED, its tag ``error`` saying when the heartbeat was lost."""
    now = time.time()
    lines = []
    for run in find_runs(client, args.experiment, args.limit, status="RUNNING"):
        if not is_stale(run, now, args.stale_after):
            continue
        run_id, beat = run.info.run_id, last_beat(run)
        if alive_here(run):
            lines.append(f"left {run_id}: its process {run.data.tags.get('nnx.pid')} is alive "
                         "on this machine")
            continue
        reason = (f"heartbeat lost at {when(beat)} (none for "
                  f"{stale_after(run, args.stale_after):g} s; reaped by nnx.runs)")
        client.set_tag(run_id, "error", reason)
        client.set_terminated(run_id, status="KILLED", end_time=int(beat * 1000))
        lines.append(f"KILLED {run_id} ({run.info.run_name}): {reason}")
    return "\n".join(lines) or "no stale runs"


def sync(args) -> str:
    from nnx.spool import replay, spool_path

    counts = replay(args.folder, args.uri)
    return (f"synced {spool_path(args.folder)}: {counts['metrics']} metric points, "
            f"{counts['tags']} tags, {counts['status']} status written; {counts['skipped']} "
            "lines were synced before")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnx.runs", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("command", nargs="?", default="list", choices=("list", "reap", "sync"))
    parser.add_argument("folder", nargs="?", help="sync: the run's folder (or its spool file)")
    parser.add_argument("--uri", help="the MLflow store (default: $NNX_TRACKING_URI or mlflow.db)")
    parser.add_argument("--experiment", help="only this experiment's runs")
    parser.add_argument("--limit", type=int, default=50, help="runs to look at, newest first")
    parser.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                        help="stale after this long without a heartbeat (default: 4 beats)")
    args = parser.parse_args(argv)
    from nnx.store import TrackingError

    try:
        if args.command == "sync":
            if not args.folder:
                parser.error("sync needs the run's folder")
            print(sync(args))
        else:
            client, _ = _client(args.uri)
            print((reap if args.command == "reap" else list_runs)(client, args))
    except (TrackingError, FileNotFoundError, ValueError, OSError) as error:
        print(f"nnx.runs: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a store's error as one paragraph
        from nnx.store import short_error

        store = f"the MLflow store {args.uri}" if args.uri else "the MLflow store"
        print(f"nnx.runs: error: {args.command} against {store} failed: {short_error(error)}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
