"""A training run that is an Optuna trial: report the objective each logged epoch, stop if pruned.

nnx's Optuna sweeper (``nnx.optuna_sweeper``) launches each trial as an ordinary run and puts
where its trial lives in the job's environment (``hydra.job.env_set``): the storage URL, the
study's name, the trial's number and id. This callback opens the study from that storage in
whatever process runs the job (the sweeper's own, a joblib worker, a submitit or Ray job), so
every launcher prunes the same way:

    on each logged epoch:  trial.report(logs[objective], step=epoch)
                           if trial.should_prune(): stop at the end of this epoch

The pruner is the sweep's (stored with the trial). The sweeper, not the job, tells the study
the trial's final state; the job only records the epoch it was pruned at.
"""

from __future__ import annotations

import os

from nnx.trainer import Callback

# Where a job finds its trial: set in its environment by the sweeper through hydra.job.env_set.
ENV_STORAGE = "NNX_OPTUNA_STORAGE"  # the storage URL
ENV_STUDY = "NNX_OPTUNA_STUDY"  # the study's name
ENV_TRIAL = "NNX_OPTUNA_TRIAL"  # the trial's number in the study
ENV_TRIAL_ID = "NNX_OPTUNA_TRIAL_ID"  # the storage's id for it
# Trial system attributes (Optuna's own place for bookkeeping, not shown as params).
ATTR_PRUNER = "nnx:pruner"  # the sweep's pruner, for the job to rebuild
ATTR_PRUNED_EPOCH = "nnx:pruned_epoch"  # set by the job when the pruner stopped it


def trial_callbacks(cfg: dict) -> list[Callback]:
    """``[OptunaPruning]`` when this run is a trial of nnx's Optuna sweeper, else ``[]``."""
    if not all(os.environ.get(k) for k in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL, ENV_TRIAL_ID)):
        return []
    return [OptunaPruning(os.environ[ENV_STORAGE], os.environ[ENV_STUDY],
                          int(os.environ[ENV_TRIAL]), int(os.environ[ENV_TRIAL_ID]),
                          str(cfg.get("objective", "val_loss")))]


class OptunaPruning(Callback):
    """Reports ``monitor`` to trial ``number`` of ``study`` every logged epoch; stops the run
    at the end of the epoch where the study's pruner prunes it."""

    def __init__(self, storage: str, study: str, number: int, trial_id: int,
                 monitor: str = "val_loss") -> None:
        self.storage_url, self.study_name = storage, study
        self.number, self.trial_id, self.monitor = number, trial_id, monitor
        self.trial = self.storage = None
        self.pruner_name = "none"
        self.pruned_epoch: int | None = None

    def on_train_start(self, trainer) -> None:
        import optuna

        from nnx.optuna_sweeper import PRUNERS, make_pruner, open_storage, spec

        self.storage = open_storage(self.storage_url, key="the trial's storage")
        value = self.storage.get_trial_system_attrs(self.trial_id).get(ATTR_PRUNER, "none")
        self.pruner_name = spec(value, "hydra.sweeper.pruner", PRUNERS)[0]
        study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                  pruner=make_pruner(value))
        self.trial = optuna.trial.Trial(study, self.trial_id)
        trainer.tracker.set_tags({"nnx.optuna.study": self.study_name})

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, float]) -> None:
        step, config = epoch + 1, trainer.config
        if step % config.log_every and step != config.epochs:
            return  # not a logged epoch (the trainer validates every epoch for callbacks)
        if self.monitor not in logs:
            return  # a metric measured once after training (test_*) cannot be reported
        value = float(logs[self.monitor])
        self.trial.report(value, step)
        if step < config.epochs and self.trial.should_prune():
            self.pruned_epoch = step
            self.storage.set_trial_system_attr(self.trial_id, ATTR_PRUNED_EPOCH, step)
            trainer.stop_training = True
            trainer.stopped_early = (f"pruned at epoch {step} by the {self.pruner_name} pruner "
                                     f"(trial {self.number}): {self.monitor} {value:.4g}")
            trainer.tracker.set_tags({"nnx.trial_state": "pruned",
                                      "nnx.pruned_epoch": str(step)})
