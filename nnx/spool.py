"""The spool: what a run could not write to its store, kept in the run's folder for later.

    spool = Spool.for_run(folder, uri, run_id)   # <folder>/tracking-spool.jsonl, append-only
    spool.metrics(batch)                         # one JSON line per point, flushed and fsynced
    spool.tags({"error": ...}); spool.status("FINISHED", end_time)
    replay(folder)                               # python -m nnx.runs sync <folder>

One file per run: a header line naming the store and the run, then one line per metric point,
tag or final status, in the order they were given up on. ``replay`` writes them to the store
and appends the numbers of the lines it wrote to ``tracking-spool.synced``, so a second sync
(or one after a crash half-way) writes nothing twice: lines already recorded are skipped, and a
point MLflow already holds is the same row (MLflow keys a point by key, step, timestamp and
value), never a second one.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

SPOOL_NAME = "tracking-spool.jsonl"
SYNCED_SUFFIX = ".synced"
BATCH = 1000  # MLflow's limit of metrics per log_batch


class Spool:
    """An append-only JSON-lines file; every write is flushed and fsynced before it returns."""

    def __init__(self, path: Path, uri: str, run_id: str) -> None:
        self.path, self.uri, self.run_id = Path(path), uri, run_id
        self.points = 0  # metric points spooled by this process
        self._lock = threading.Lock()  # the writer thread and the main thread both append

    @classmethod
    def for_run(cls, folder: str | Path, uri: str, run_id: str) -> Spool:
        return cls(Path(folder) / SPOOL_NAME, uri, run_id)

    def _append(self, records: list[dict]) -> None:
        with self._lock:
            self._append_unlocked(records)

    def _append_unlocked(self, records: list[dict]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        if new:
            lines.append({"spool": 1, "uri": self.uri, "run_id": self.run_id})
        lines += records
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in lines))
            handle.flush()
            os.fsync(handle.fileno())

    def metrics(self, metrics: list) -> None:
        """Spool MLflow ``Metric`` entities (key, value, timestamp, step)."""
        self._append([{"metric": m.key, "value": m.value, "timestamp": m.timestamp,
                       "step": m.step} for m in metrics])
        self.points += len(metrics)

    def tags(self, tags: dict[str, str]) -> None:
        self._append([{"tag": k, "value": str(v)} for k, v in tags.items()])

    def status(self, status: str, end_time: int) -> None:
        self._append([{"status": status, "end_time": end_time}])


def spool_path(folder: str | Path) -> Path:
    """The spool file of a run folder (or the file itself)."""
    path = Path(folder)
    if path.is_dir():
        found = path / SPOOL_NAME
        return found if found.is_file() else next(path.rglob(SPOOL_NAME), found)
    return path


def read(path: Path) -> tuple[dict, list[tuple[int, dict]]]:
    """(header, [(line number, record)]) of a spool; a torn last line (a crash while writing)
    is left out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path} is empty")
    header = json.loads(lines[0])
    if header.get("spool") != 1 or not header.get("run_id"):
        raise ValueError(f"{path} is not an nnx tracking spool")
    records = []
    for number, line in enumerate(lines[1:], start=1):
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise ValueError(f"{path}: line {number + 1} is damaged") from None
    return header, records


def synced_lines(path: Path) -> set[int]:
    record = path.with_name(path.name + SYNCED_SUFFIX)
    if not record.is_file():
        return set()
    return {int(n) for n in record.read_text().split()}


def _record(path: Path, numbers: list[int]) -> None:
    with open(path.with_name(path.name + SYNCED_SUFFIX), "a", encoding="utf-8") as handle:
        handle.write("".join(f"{n}\n" for n in numbers))
        handle.flush()
        os.fsync(handle.fileno())


def replay(folder: str | Path, uri: str | None = None) -> dict[str, int]:
    """Write a run folder's spool into its store (``uri`` overrides the one it names); returns
    counts: metrics and tags written, lines already synced before, and the status set."""
    from nnx.store import TrackingError, open_store, short_error

    # set_terminated prints a server run's URL to stdout unless told not to: sync says enough
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    path = spool_path(folder)
    if not path.is_file():
        raise FileNotFoundError(f"no tracking spool in {folder} (looked for {SPOOL_NAME})")
    header, records = read(path)
    done = synced_lines(path)
    uri = uri or header["uri"]
    client = open_store(uri)
    try:
        return _replay(client, path, header, records, done)
    except Exception as error:  # a store's error as one paragraph, the cause chained
        raise TrackingError(f"syncing {path} into the MLflow store {uri} failed: "
                            f"{short_error(error)}. Nothing is lost: the lines not written "
                            "stay in the spool, and a later sync goes on from there") from error


def _replay(client, path: Path, header: dict, records: list, done: set[int]) -> dict[str, int]:
    from mlflow.entities import Metric, RunTag

    run_id = header["run_id"]
    todo = [(n, r) for n, r in records if n not in done]
    counts = {"metrics": 0, "tags": 0, "skipped": len(records) - len(todo), "status": 0}
    metrics = [(n, r) for n, r in todo if "metric" in r]
    for i in range(0, len(metrics), BATCH):
        chunk = metrics[i:i + BATCH]
        client.log_batch(run_id, metrics=[Metric(r["metric"], float(r["value"]),
                                                 int(r["timestamp"]), int(r["step"]))
                                          for _, r in chunk])
        _record(path, [n for n, _ in chunk])
        counts["metrics"] += len(chunk)
    tags = [(n, r) for n, r in todo if "tag" in r]
    if tags:
        client.log_batch(run_id, tags=[RunTag(r["tag"], r["value"]) for _, r in tags])
        _record(path, [n for n, _ in tags])
        counts["tags"] = len(tags)
    # The status last: a run is closed only once everything it logged is in.
    for n, r in todo:
        if "status" in r:
            client.set_terminated(run_id, status=r["status"], end_time=int(r["end_time"]))
            _record(path, [n])
            counts["status"] += 1
    points = sum(1 for n, r in records if "metric" in r and (n in done or n in
                                                               {m for m, _ in metrics}))
    client.set_tag(run_id, "nnx.spool_synced", str(points))
    return counts
