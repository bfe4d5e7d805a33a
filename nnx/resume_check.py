"""On resume, the record matches what ran: every config difference from the checkpoint is
applied and recorded, or refused before training with its key, old and new value.

    changes = check_resume(saved_config, cfg, schedule, epoch)   # or a ConfigError

The checkpoint keeps the config it was trained with (tracking aside). ``RULES`` says, key by
key, what a resumed run may change:

- applied from the checkpoint's epoch on, and recorded (MLflow tag ``nnx.resume_changes``): the
  optimizer's settings (``optimizer.lr``, ...), the schedule, ``trainer.epochs``, logging,
  checkpointing, early stopping and the divergence factor;
- ignored (where the run is written, how it is shown): ``tracking.*``,
  ``trainer.checkpoint_dir``, ``trainer.resume``, ``trainer.progress``, ``name``,
  ``objective``, ``print_predictions``;
- refused: everything else (the data, the model, the loss, ``dtype``, ``seed``, the batches:
  they make the trained weights what they are), and ``optimizer.name`` (its state belongs to
  its class).

A schedule that depends on the run's length (cosine over ``trainer.epochs``) would have given
the epochs already trained other rates under a new length: a change of ``trainer.epochs`` is
then refused, so a resumed run is always bit-identical to the run it is recorded as. The test:
the schedule's factors for the trained epochs under both lengths.
"""

from __future__ import annotations

import json

from nnx.config import ConfigError
from nnx.run_metadata import flatten

APPLY, IGNORE, REFUSE = "apply", "ignore", "refuse"
# (key or "prefix.", verdict): the first that matches decides; unlisted keys are refused.
RULES = (
    ("tracking.", IGNORE), ("trainer.checkpoint_dir", IGNORE), ("trainer.resume", IGNORE),
    ("trainer.progress", IGNORE), ("name", IGNORE), ("objective", IGNORE),
    ("print_predictions", IGNORE),
    ("optimizer.name", REFUSE),
    ("optimizer.", APPLY), ("schedule.", APPLY), ("trainer.epochs", APPLY),
    ("trainer.log_every", APPLY), ("trainer.checkpoint_every", APPLY),
    ("trainer.early_stopping.", APPLY), ("trainer.divergence_factor", APPLY),
)


def verdict(key: str) -> str:
    for rule, outcome in RULES:
        if key == rule or (rule.endswith(".") and key.startswith(rule)):
            return outcome
    return REFUSE


def recorded_config(cfg: dict) -> dict:
    """What a checkpoint keeps of the config: all of it but ``tracking`` (a store's URI)."""
    return {k: v for k, v in cfg.items() if k != "tracking"}


def _text(value) -> str:
    return json.dumps(value)


def check_resume(saved: dict, cfg: dict, schedule, trained: int, path="the checkpoint") -> list[dict]:
    """The applied changes ``[{key, old, new, from_epoch}]`` of ``cfg`` over the checkpoint's
    config ``saved`` (``trained`` epochs done), or a ConfigError naming every refused one."""
    old, new = flatten(recorded_config(saved)), flatten(recorded_config(cfg))
    applied, refused = [], []
    for key in sorted(set(old) | set(new)):
        if key not in old:  # a setting the checkpoint's nnx did not have
            continue
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        outcome = verdict(key)
        if outcome == REFUSE:
            refused.append(f"{key}: {_text(before)} -> {_text(after)}")
        elif outcome == APPLY:
            applied.append({"key": key, "old": before, "new": after, "from_epoch": trained + 1})
    if refused:
        raise ConfigError(
            f"trainer.resume: checkpoint {path} does not match this run in settings that cannot "
            f"change on resume (checkpoint -> this run): {'; '.join(refused)}. They shape the "
            "data, the network or its training so far: resume with the checkpoint's values, or "
            "start a new run")
    epochs = (old.get("trainer.epochs"), new.get("trainer.epochs"))
    if schedule is not None and epochs[0] != epochs[1] and None not in epochs:
        for epoch in range(trained):
            a, b = schedule(epoch, epochs[0]), schedule(epoch, epochs[1])
            if a != b:
                name = new.get("schedule.name", type(schedule).__name__)
                raise ConfigError(
                    f"trainer.epochs: {epochs[0]} -> {epochs[1]} (checkpoint -> this run) is "
                    f"refused: schedule {name} depends on the run's length (epoch {epoch + 1}'s "
                    f"factor is {a:.10g} over {epochs[0]} epochs but {b:.10g} over {epochs[1]}), so "
                    f"the {trained} epochs trained would not be those of a {epochs[1]}-epoch run. "
                    f"Resume with trainer.epochs={epochs[0]}, or start a new run")
    return applied


def describe(changes: list[dict]) -> str:
    """``optimizer.lr 0.001 -> 0.1, trainer.epochs 5 -> 10 (from epoch 6)``."""
    if not changes:
        return ""
    parts = ", ".join(f"{c['key']} {_text(c['old'])} -> {_text(c['new'])}" for c in changes)
    return f"{parts} (from epoch {changes[0]['from_epoch']})"
