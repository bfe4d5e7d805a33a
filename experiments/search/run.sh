#!/usr/bin/env bash
# The search benchmark: a 40-trial TPE search of the Fashion-MNIST MLP
# (hparams_search=fashion_mnist_optuna: 10 epochs a trial, scored on a 10% validation split),
# once without pruning and once with the median pruner, same seed, each its own study; then
# results/summary.md compares the epochs they trained and the best validation accuracy found,
# and gives each search's best trial's accuracy on the official test set (looked at once, for
# that trial only: it plays no part in the choice).
# Run from anywhere: bash experiments/search/run.sh   (needs the dataset; about 2 x 40 x 10 epochs)
source "$(dirname "$0")/../study.sh"
rm -f "$STUDY_DIR/optuna.journal" "$STUDY_DIR/optuna.journal.lock"
STORAGE="journal://$STUDY_DIR/optuna.journal"
for search in unpruned pruned; do
  pruner=none
  # Median pruner: no pruning before 5 trials have finished, nor before a trial's 3rd epoch.
  [ "$search" = pruned ] && pruner='{name:median,n_startup_trials:5,n_warmup_steps:2}'
  nnx_run -m experiment=fashion_mnist_mlp hparams_search=fashion_mnist_optuna \
    name="search_$search" hydra.sweeper.n_trials=40 hydra.sweeper.pruner="$pruner" \
    hydra.sweeper.storage="$STORAGE" tracking.log_model=false tracking.plots=false \
    hydra.sweep.dir="$STUDY_DIR/outputs/$search"
done
"$PY" "$STUDY_DIR/report.py" --storage "$STORAGE" --uri "$STORE" --out "$RESULTS/summary.md"
cat "$RESULTS/summary.md"
