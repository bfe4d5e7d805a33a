"""Runs you can trust, tried for real: a tracking server stopped mid-run loses no point (stored,
or spooled and then synced by ``nnx.runs sync``); a run killed with SIGKILL is shown stale by
``nnx.runs``, closed by ``nnx.runs reap`` and resumed by run id from its last uploaded checkpoint,
bit for bit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_resume import assert_same_checkpoints
from test_tracking_server import BIN, free_port, get, start, stop, wait_until_up

from nnx import checkpoint, runs
from nnx.metrics import stored_key
from nnx.spool import SPOOL_NAME

ROOT = Path(__file__).resolve().parent.parent
BASE = ["experiment=spirals", "model.dropout=0.2", "trainer.log_every=1", "tracking.plots=false",
        "tracking.log_model=false"]
TIMING = ("epoch_seconds", "samples_per_second")


def launch(args: list[str], run_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnx.run", *BASE, *args,
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def poll(what: str, check, timeout: float = 60, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def mlflow_server(tmp_path: Path, store_template: Path, port: int) -> subprocess.Popen:
    if not (tmp_path / "server.db").exists():
        shutil.copy(store_template, tmp_path / "server.db")
    return start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                  "--artifacts-destination", str(tmp_path / "artifacts")],
                 tmp_path / "server.log", {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"})


def test_a_server_stopped_mid_run_loses_no_metric(tmp_path, store_template):
    """The run is paused (SIGSTOP) once its first points are stored, the server is stopped, and
    the run goes on to its end with the server down: its points and final status go to the
    spool. With the server back, ``nnx.runs sync`` stores them: every metric has exactly one
    point per epoch. A second sync stores nothing."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/2.0/mlflow"
    server = mlflow_server(tmp_path, store_template, port)
    epochs = 300
    try:
        wait_until_up(f"{base}/health", server, tmp_path / "server.log")
        run = launch([f"trainer.epochs={epochs}", f"tracking.uri={base}",
                      "tracking.flush_seconds=0.05", "tracking.retry_seconds=1"],
                     tmp_path / "run", {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})

        def first_points():
            try:
                exp = get(f"{api}/experiments/get-by-name?experiment_name=spirals")
            except OSError:
                return None
            found = post_search(api, exp["experiment"]["experiment_id"])
            if found and get(f"{api}/metrics/get-history?run_id={found[0]}&metric_key=train/loss"
                             ).get("metrics"):
                return found[0]
            return None

        run_id = poll("the run's first points in the store", first_points, every=0.05)
        run.send_signal(signal.SIGSTOP)
        stop(server, port)
        run.send_signal(signal.SIGCONT)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]  # tracking.strict is off
        assert "metric points and the final status" in err and "python -m nnx.runs sync" in err, \
        err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        spool = tmp_path / "run" / SPOOL_NAME
        assert spool.is_file()

        server = mlflow_server(tmp_path, store_template, port)
        wait_until_up(f"{base}/health", server, tmp_path / "server.log")
        run_info = get(f"{api}/runs/get?run_id={run_id}")["run"]
        assert run_info["info"]["status"] == "RUNNING"  # its status is in the spool too
        assert runs.main(["sync", str(tmp_path / "run")]) == 0
        run_info = get(f"{api}/runs/get?run_id={run_id}")["run"]
        assert run_info["info"]["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in run_info["data"]["tags"]}
        assert int(tags["nnx.spooled_points"]) > 0

        history = checkpoint.read(tmp_path / "run" / "checkpoints" / "last.npz")[0]["history"]
        keys = sorted(set(history[0]) - {"epoch"})
        assert len(history) == epochs and len(keys) >= 8
        for key in keys:  # epochs x metrics, each point once
            points = get(f"{api}/metrics/get-history?run_id={run_id}"
                         f"&metric_key={stored_key(key)}")["metrics"]
            assert sorted(p["step"] for p in points) == list(range(1, epochs + 1)), key
            if key not in TIMING:
                assert [p["value"] for p in sorted(points, key=lambda p: p["step"])] == \
                    [row[key] for row in history], key

        before = spool.read_text()
        assert runs.main(["sync", str(tmp_path / "run")]) == 0  # idempotent
        assert spool.read_text() == before
        for key in keys:
            points = get(f"{api}/metrics/get-history?run_id={run_id}"
                         f"&metric_key={stored_key(key)}")["metrics"]
            assert len(points) == epochs, key
    finally:
        stop(server, port)


def post_search(api: str, experiment_id: str) -> list[str]:
    from test_tracking_server import post

    return [r["info"]["run_id"] for r in
            post(f"{api}/runs/search", {"experiment_ids": [experiment_id]}).get("runs", [])]


def listed_status(listing: str, run_id: str) -> str:
    """The status column of ``run_id``'s row in ``nnx.runs``' listing."""
    row = next(line for line in listing.splitlines() if line.startswith(run_id))
    return re.split(r"\s{2,}", row)[3]  # columns are 2+ spaces apart; a run name holds spaces


def nnx_runs(args: list[str], capsys) -> str:
    assert runs.main(args) == 0
    return capsys.readouterr().out


def test_a_killed_run_is_found_stale_reaped_and_resumed_bit_identically(tmp_path, store,
                                                                       capsys):
    from mlflow.tracking import MlflowClient

    env = {"NNX_TRACKING_URI": store}
    killed = launch(["trainer.epochs=100000", "trainer.checkpoint_every=1",
                     "tracking.heartbeat_seconds=0.5", "tracking.flush_seconds=0.2"],
                    tmp_path / "killed", env)
    client = MlflowClient(store)

    def uploaded():
        """The run id once a checkpoint is uploaded and points are stored (what compare and
        resume read below), however long a busy machine takes to get there."""
        exp = client.get_experiment_by_name("spirals")
        found = client.search_runs([exp.experiment_id]) if exp else []
        if found and client.list_artifacts(found[0].info.run_id, "checkpoints") \
                and client.get_metric_history(found[0].info.run_id, "train/loss"):
            return found[0].info.run_id
        return None

    try:
        run_id = poll("a checkpoint uploaded and points stored", uploaded, timeout=90)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
    # Alive a moment ago: its heartbeat is fresh, so it is not stale yet, and reap leaves it.
    if listed_status(nnx_runs(["--uri", store], capsys), run_id) == "RUNNING":
        assert "no stale runs" in nnx_runs(["reap", "--uri", store], capsys)
    # Shown stale within 4 heartbeats (2 s here).
    poll("nnx.runs shows it STALE", lambda: listed_status(nnx_runs(["--uri", store], capsys),
                                                          run_id) == "STALE",
         timeout=30, every=0.5)
    from nnx.compare import runs_table

    table = runs_table(experiment="spirals", uri=store)
    assert table.set_index("run_id").loc[run_id, "status"] == "STALE"  # nnx.compare says so too
    reaped = nnx_runs(["reap", "--uri", store], capsys)
    assert f"KILLED {run_id}" in reaped and "heartbeat lost at" in reaped
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["error"].startswith("heartbeat lost at")
    assert "no stale runs" in nnx_runs(["reap", "--uri", store], capsys)

    path = client.download_artifacts(run_id, "checkpoints/last.npz", str(tmp_path / "dl"))
    epoch = checkpoint.read(path)[0]["epoch"]
    assert epoch >= 1
    target = epoch + 3
    resumed = launch([f"trainer.epochs={target}", f"trainer.resume={run_id}"],
                     tmp_path / "resumed", env)
    straight = launch([f"trainer.epochs={target}"], tmp_path / "straight", env)
    for proc in (resumed, straight):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    meta = assert_same_checkpoints(tmp_path / "straight" / "checkpoints" / "last.npz",
                                   tmp_path / "resumed" / "checkpoints" / "last.npz")
    assert meta["epoch"] == target


def test_strict_tracking_fails_a_run_whose_record_is_incomplete(tmp_path, store, monkeypatch):
    """The store goes away after the run started (its client now talks to a port nobody
    listens on): the points are spooled, tracking.strict makes finish() fail saying how to
    sync, and a sync into the store brings every point there, once."""
    import pytest
    from mlflow.tracking import MlflowClient

    from nnx.mlflow_tracker import MlflowTracker
    from nnx.store import TrackingError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(store)
    experiment = client.create_experiment("strict")
    tracker = MlflowTracker(client, store, experiment, {"retry_seconds": 0.2, "strict": True})
    config = {"trainer": {"checkpoint_dir": str(tmp_path / "run" / "checkpoints")}}
    tracker.start(config, None, None)
    tracker.log_metrics({"loss": 1.0}, step=1)
    tracker.flush(wait=True)
    dead = MlflowClient(f"http://127.0.0.1:{free_port()}")
    tracker.client = tracker._writer.client = dead
    for step in range(2, 6):
        tracker.log_metrics({"loss": 1.0 / step, "lr": 0.1}, step=step)
    with pytest.raises(TrackingError, match=r"tracking.strict: MLflow run .* is incomplete "
                       r"\(8 metric points spooled, status not set\).*python -m nnx.runs sync"):
        tracker.finish("FINISHED")
    assert runs.main(["sync", str(tmp_path / "run"), "--uri", store]) == 0
    assert runs.main(["sync", str(tmp_path / "run"), "--uri", store]) == 0
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["nnx.spooled_points"] == "8"
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train/loss")] == [1, 2, 3, 4, 5]
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train/lr")] == [2, 3, 4, 5]


def test_the_final_status_write_is_shielded_from_signals(capsys):
    """SIGINT and SIGTERM inside the block are reported, not acted on; after it, the handlers
    in place before are back (handlers of the test's own, so that whatever an earlier test in
    this process left installed does not matter)."""
    from nnx.shield import shielded

    seen = []
    old = {sig: signal.signal(sig, lambda signum, frame: seen.append(signum))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with shielded("the final status (KILLED) of MLflow run abc"):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handlers run here, in the main thread
            done = True
        assert done and seen == []
        err = capsys.readouterr().err
        assert "nnx: SIGINT while writing the final status (KILLED) of MLflow run abc: it is " \
            "written first" in err and "nnx: SIGTERM while writing" in err
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == [signal.SIGINT, signal.SIGTERM], "the handlers from before the block"
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# -- torn checkpoints are never read ------------------------------------------------------------
def half(path: Path, to: Path | None = None) -> Path:
    """The first half of ``path``'s bytes, written to ``to`` (default: over ``path`` itself):
    what a write or an upload stopped by kill -9 would leave."""
    data = path.read_bytes()
    (to or path).write_bytes(data[:len(data) // 2])
    return to or path


def resume_run(args: list[str], run_dir: Path, env: dict) -> tuple[int, str]:
    proc = launch(args, run_dir, env)
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err


def assert_refused(code: int, err: str, *parts: str) -> None:
    """Exit 2, one paragraph (the error and the NNX_DEBUG hint), no traceback."""
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.strip().splitlines() if line.startswith("nnx: error:")]
    assert len(lines) == 1 and all(p in lines[0] for p in parts), err[-3000:]
    assert "Nothing was trained" in lines[0], err[-3000:]


def test_a_torn_checkpoint_is_never_resumed_from(tmp_path, store):
    """A run folder holds its whole last.npz beside a half-written temporary one (a kill -9 in
    checkpoint.save): resume from the folder reads the whole one. Its artifact folder holds a
    half-uploaded staging file beside the whole checkpoints/last.npz (a kill -9 in the
    upload): resume by run id reads the whole one, and the staging file is not listed. A
    last.npz damaged by hand, in the folder or in the store, is refused with one paragraph
    naming it; nothing trains."""
    from mlflow.tracking import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    env = {"NNX_TRACKING_URI": store}
    first = tmp_path / "first"
    code, err = resume_run(["trainer.epochs=3"], first, env)
    assert code == 0, err[-3000:]
    good = first / "checkpoints" / "last.npz"
    history = checkpoint.read(good)[0]["history"]
    half(good, good.parent / ".last.npz.k9x2ab.tmp")  # checkpoint.save's temporary name
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("spirals").experiment_id])
    artifacts = Path(local_file_uri_to_path(run.info.artifact_uri)) / "checkpoints"
    half(artifacts / "last.npz", artifacts / ".artifact.uploading.k9x2ab")  # MLflow's staging
    assert [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")] == \
        ["checkpoints/last.npz"]

    for source, run_dir in ((str(first), "from-folder"), (run.info.run_id, "from-run")):
        code, err = resume_run(["trainer.epochs=5", f"trainer.resume={source}"],
                               tmp_path / run_dir, env)
        assert code == 0, err[-3000:]
        resumed = checkpoint.read(tmp_path / run_dir / "checkpoints" / "last.npz")[0]
        assert resumed["epoch"] == 5 and resumed["history"][:3] == history  # went on from 3

    half(good)
    code, err = resume_run(["trainer.epochs=5", f"trainer.resume={first}"], tmp_path / "bad1",
                           env)
    assert_refused(code, err, f"trainer.resume: checkpoint {good} is damaged")
    half(artifacts / "last.npz")
    code, err = resume_run(["trainer.epochs=5", f"trainer.resume={run.info.run_id}"],
                           tmp_path / "bad2", env)
    assert_refused(code, err, f"trainer.resume: the checkpoints/last.npz artifact of MLflow run "
                   f"{run.info.run_id} in {store} cannot be resumed from", "is damaged")
    assert not (tmp_path / "bad1" / "checkpoints" / "last.npz").exists()
    assert not (tmp_path / "bad2" / "checkpoints" / "last.npz").exists()
