"""The planted bugs of ``make mutants`` (run.py), one per entry.

Each entry replaces one exact piece of text, which must occur exactly once in its file, and
names the tests that should fail because of it (pytest arguments: files, ``::`` ids, ``-k``).
To add one: copy an entry, pick a behaviour no entry covers yet, write the smallest change a
person could make by mistake, point ``tests`` at the tests that own the behaviour (a few
seconds' worth, not the suite), and check that ``python tests/mutants/run.py --only NAME``
says killed. If it survives, the tests are what needs work, not the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

VALUES = "tests/test_logged_values.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


MUTANTS = [
    # -- the survivors issue 20 found: early stopping, grad_norm, rmse, compare, eval mode --------
    Mutant("early-stopping-never-restores", "nnx/trainer.py",
           "trainer.network.flat_params[...] = self.best_weights", "pass",
           (VALUES, "-k", "early_stopping"), "the best weights are kept but never put back"),
    Mutant("restored-weights-with-the-last-epochs-metrics", "nnx/trainer.py",
           "logs.update(self.best_logs)", "pass",
           (VALUES, "-k", "restored or kept"),
           "the weights kept are the best epoch's, the final metrics and objective the last's"),
    Mutant("grad-norm-of-the-weights", "nnx/trainer.py",
           'stats = {"grad_norm": float(np.linalg.norm(self.network.flat_grads))}',
           'stats = {"grad_norm": float(np.linalg.norm(self.network.flat_params))}',
           (VALUES,), "grad_norm logs the weights' norm"),
    Mutant("grad-norm-after-the-step", "nnx/trainer.py",
           "if reported and i == n_batches - 1:", "if reported and i == 0:",
           (VALUES,), "gradient norms of the first batch, not the last"),
    Mutant("rmse-without-square-root", "nnx/metrics.py",
           "return float(np.sqrt(np.mean((outputs - targets.reshape(outputs.shape)) ** 2)))",
           "return float(np.mean((outputs - targets.reshape(outputs.shape)) ** 2))",
           (VALUES, "tests/test_metrics.py"), "rmse is the mean squared error"),
    Mutant("r2-upside-down", "nnx/metrics.py",
           'return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")',
           'return ss_res / ss_tot if ss_tot > 0 else float("nan")',
           (VALUES, "tests/test_metrics.py"), "r2 is 1 - r2"),
    Mutant("compare-unfinished-first", "nnx/compare.py",
           "groups = (table[finished], table[~finished])",
           "groups = (table[~finished], table[finished])",
           ("tests/test_compare.py", "-k", "unfinished or property"),
           "killed, failed and running runs listed before the finished ones"),
    Mutant("compare-missing-metrics-first", "nnx/compare.py",
           'na_position="last"', 'na_position="first"',
           ("tests/test_compare.py", "-k", "unfinished or property"),
           "runs without the metric listed first"),
    Mutant("evaluation-in-training-mode", "nnx/network.py",
           "        self.eval()\n", "        self.train()\n",
           (VALUES, "-k", "dropout"), "validation with dropout on"),
    Mutant("patience-off-by-one", "nnx/trainer.py",
           "if self.wait >= self.patience:", "if self.wait > self.patience:",
           (VALUES, "-k", "early_stopping"), "early stopping waits one epoch too many"),
    # -- the single-guard behaviours: clip-norm, partial batch, partition, sweep parent, sort ----
    Mutant("clip-norm-inverted", "nnx/optimizers.py",
           "if norm > self.clip_norm:", "if norm < self.clip_norm:",
           (VALUES, "-k", "clip or classification"), "gradients clipped when they are small"),
    Mutant("clip-norm-wrong-scale", "nnx/optimizers.py",
           "g *= self.clip_norm / norm", "g *= self.clip_norm",
           (VALUES, "-k", "clip or classification"), "clipping scales instead of normalising"),
    Mutant("partial-batch-weighted-as-full", "nnx/trainer.py",
           "total_loss += value * len(xb)", "total_loss += value * self.config.batch_size",
           (VALUES, "-k", "regression"), "the epoch's loss weights the last batch as a full one"),
    Mutant("last-partial-batch-dropped", "nnx/data.py",
           "            for start in range(0, n, size):\n                yield x[start:start + size]",
           "            for start in range(0, n - size + 1, size):\n"
           "                yield x[start:start + size]",
           ("tests/test_data.py", "-k", "batches"), "an unshuffled epoch skips the last batch"),
    Mutant("split-overlaps", "nnx/data.py",
           "    keep[val] = False\n",
           "    keep[val[1:]] = False\n",
           ("tests/test_data.py", "-k", "split"), "one sample in both train and validation"),
    Mutant("failed-sweep-parent-finished", "nnx/sweep_parent.py",
           'status = "FINISHED" if children and counts.get("FINISHED", 0) == len(children) '
           'else "FAILED"', 'status = "FINISHED"',
           ("tests/test_sweeps.py", "-k", "closes_its_parent or property"),
           "a sweep with failed jobs is closed FINISHED"),
    Mutant("sweep-best-from-any-job", "nnx/sweep_parent.py",
           'scored = [c for c in children if c.info.status == "FINISHED"\n',
           "scored = [c for c in children if True\n",
           ("tests/test_sweeps.py", "-k", "closes_its_parent or property"),
           "a failed job can be the sweep's best"),
    Mutant("sweep-running-children-left-open", "nnx/sweep_parent.py",
           'orphans = [c for c in children if c.info.status in ("RUNNING", "SCHEDULED")]',
           "orphans = []",
           ("tests/test_sweeps.py", "-k", "closes_its_parent or property"),
           "a killed sweep leaves its running jobs RUNNING"),
    # -- more of the loop around the numerics -------------------------------------------------
    Mutant("schedule-one-epoch-ahead", "nnx/trainer.py",
           "opt.lr = self.learning_rate(epoch)", "opt.lr = self.learning_rate(epoch + 1)",
           (VALUES,), "each epoch trains with the next epoch's rate"),
    Mutant("update-ratio-not-relative", "nnx/trainer.py",
           "float(np.linalg.norm(p.reshape(-1) - before)) / norm if norm > 0 else 0.0",
           "float(np.linalg.norm(p.reshape(-1) - before)) if norm > 0 else 0.0",
           (VALUES,), "update_ratio is the update's norm"),
    Mutant("train-accuracy-per-batch", "nnx/trainer.py",
           'logs["accuracy"] = total_correct / seen', 'logs["accuracy"] = total_correct / len(xb)',
           (VALUES, "-k", "classification"), "training accuracy divided by the last batch"),
    Mutant("log-every-off-by-one", "nnx/trainer.py",
           "if stopping or (epoch + 1) % cfg.log_every == 0:",
           "if stopping or epoch % cfg.log_every == 0:",
           (VALUES, "-k", "log_every"), "reported epochs shifted by one"),
    Mutant("min-delta-wrong-sign", "nnx/trainer.py",
           "if value < self.best - self.min_delta:", "if value < self.best + self.min_delta:",
           (VALUES, "-k", "early_stopping"), "min_delta makes improving easier, not harder"),
    Mutant("argmax-becomes-argmin", "nnx/metrics.py",
           "    return outputs.argmax(axis=1)", "    return outputs.argmin(axis=1)",
           (VALUES, "-k", "classification"), "predicted class is the least likely"),
    Mutant("r2-not-maximised", "nnx/metrics.py",
           'return "accuracy" in name or name.endswith("r2")', 'return "accuracy" in name',
           ("tests/test_metrics.py",), "r2 treated as smaller-is-better"),
    Mutant("objective-always-val-loss", "nnx/experiment.py",
           'logs["objective"] = logs[cfg.get("objective", "val_loss")]',
           'logs["objective"] = logs["val_loss"]',
           ("tests/test_run.py", "-k", "every_preset_trains"),
           "the objective ignores the configured metric"),
    Mutant("checkpoint-temporary-left", "nnx/checkpoint.py",
           "        Path(tmp).unlink(missing_ok=True)\n", "        pass\n",
           ("tests/test_checkpoint.py", "-k", "keeps_previous"),
           "a failed checkpoint write leaves its temporary file"),
    Mutant("second-signal-waits", "nnx/run.py",
           "        if STOP.reason is not None:\n", "        if False:\n",
           ("tests/test_signals.py", "-k", "second_signal"),
           "a second SIGTERM also waits for the epoch's end"),
    Mutant("orphaned-workers-train-on", "nnx/launcher_watch.py",
           "if launcher is None or os.getppid() != launcher:", "if True:",
           ("tests/test_sweeps.py", "-k", "killed_launcher"),
           "workers of a killed sweep launcher keep training"),
]
