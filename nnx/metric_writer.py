"""The background writer of a run's metrics, its heartbeat, and what happens when the store fails.

    writer = MetricWriter(client, run_id, spool=spool, retry_seconds=120, heartbeat_seconds=30)
    writer.start()            # the thread; it beats (tag nnx.heartbeat) every heartbeat_seconds
    writer.submit(metrics)    # MLflow Metric entities, written with log_batch
    writer.drain()            # wait until every point is stored or spooled

``log_batch`` costs about 0.1 ms per metric on sqlite (more against a server): a few ms per logged
epoch, which a small network's epoch notices, so the thread writes while the main thread trains
(NumPy and sqlite both release the GIL).

No point is dropped. A failed write is retried with a doubling pause (0.5 s, 1 s, ... 8 s) for
``retry_seconds`` from the first failure of an outage; after that, what cannot be written goes to
the run's spool (``nnx.spool``) and each later batch gets one attempt, so a store that comes back
gets the rest. Only a spool that cannot be written either (a full disk) is an error.
"""

from __future__ import annotations

import threading
import time

from nnx.run_metadata import MAX_METRICS_PER_BATCH, now_ms
from nnx.store import TrackingError, short_error

HEARTBEAT_TAG = "nnx.heartbeat"


class MetricWriter:
    """Sends metric batches (and heartbeats) to the store on a background thread."""

    def __init__(self, client, run_id: str, *, spool=None, retry_seconds: float = 120.0,
                 heartbeat_seconds: float = 0.0, uri: str | None = None) -> None:
        self.client, self.run_id, self.spool = client, run_id, spool
        self.uri = uri or getattr(client, "tracking_uri", "the MLflow store")
        self.retry_seconds, self.heartbeat_seconds = retry_seconds, heartbeat_seconds
        self._pending: list = []
        self._busy = False
        self._error: BaseException | None = None  # a spool that could not be written
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._outage_until: float | None = None  # retrying until then; None: the store works
        self.failure: str | None = None  # the first write error of the run, as one line
        self._next_beat = time.monotonic()
        self.missed_beats = 0
        self._closed = False

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                # A daemon: a process that dies without finish() must not hang on it.
                self._thread = threading.Thread(target=self._loop, name="nnx-mlflow-writer",
                                                daemon=True)
                self._thread.start()

    def submit(self, metrics: list) -> None:
        self.start()
        with self._cond:
            self._pending.extend(metrics)
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._closed:
                        return
                    if self.heartbeat_seconds and time.monotonic() >= self._next_beat:
                        break
                    wait = (self._next_beat - time.monotonic() if self.heartbeat_seconds
                            else None)
                    self._cond.wait(wait)
                chunk = self._pending[:MAX_METRICS_PER_BATCH]
                del self._pending[:len(chunk)]
                self._busy = True
            try:
                if (self.heartbeat_seconds and not self._closed
                        and time.monotonic() >= self._next_beat):
                    self._beat()
                if chunk:
                    self._write(chunk)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _beat(self) -> None:
        """One tag write: the time of this beat, in ms since the epoch. A failed beat is not
        retried (the next one is due soon); the run looks stale meanwhile, as it should."""
        self._next_beat = time.monotonic() + self.heartbeat_seconds
        try:
            self.client.set_tag(self.run_id, HEARTBEAT_TAG, str(now_ms()))
        except Exception:  # noqa: BLE001 - a heartbeat never fails a run
            self.missed_beats += 1

    def _write(self, chunk: list) -> None:
        delay = 0.5
        while True:
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
                self._outage_until = None
                return
            except Exception as error:  # noqa: BLE001 - retried, then spooled
                now = time.monotonic()
                if self.failure is None:
                    self.failure = short_error(error)
                if self._outage_until is None:
                    self._outage_until = now + self.retry_seconds
                if now + delay > self._outage_until:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        # Given up: this chunk and everything waiting go to the spool in one write.
        with self._cond:
            chunk = chunk + self._pending
            self._pending = []
        try:
            if self.spool is None:
                raise OSError("this run has no spool")
            self.spool.metrics(chunk)
        except Exception as error:  # noqa: BLE001 - handed to the main thread by drain()
            with self._cond:
                self._error = self._error or TrackingError(
                    f"writing {len(chunk)} metric points to the MLflow store {self.uri} failed "
                    f"({self.failure}) and so did keeping them in the spool "
                    f"{getattr(self.spool, 'path', '')} ({short_error(error)}): they are lost")

    def close(self) -> None:
        """No more beats; the thread ends once nothing is pending (call after ``drain``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """Stop waiting for the store (a second Ctrl-C at the end of a run): what is queued goes
        to the spool now, and a write being retried gives up at its next failure."""
        with self._cond:
            chunk, self._pending = self._pending, []
            self._outage_until = time.monotonic()
        if chunk and self.spool is not None:
            self.spool.metrics(chunk)

    @property
    def spooled(self) -> int:
        return self.spool.points if self.spool is not None else 0

    def drain(self) -> None:
        """Block until every submitted metric is stored or spooled; raise a TrackingError if
        some could be neither."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error
