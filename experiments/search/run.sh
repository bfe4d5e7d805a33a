#!/usr/bin/env bash
# The search benchmark: a 40-trial TPE search of the Fashion-MNIST MLP
# (hparams_search=fashion_mnist_optuna: 10 epochs a trial, scored on a 10% validation split),
# once without pruning and once with the median pruner, same seed, each its own study, the
# two side by side (one BLAS thread each); then results/summary.md compares the epochs they
# trained and the best validation accuracy found, and gives each search's best trial's
# accuracy on the official test set (looked at once, for that trial only: it plays no part
# in the choice).
# The trials train on the first LIMIT_TRAIN training images (15,000 by default: about 25
# minutes on two cores; LIMIT_TRAIN=0 uses all 60,000, about four times as long).
# Run from anywhere: bash experiments/search/run.sh   (needs the dataset: make data)
source "$(dirname "$0")/../study.sh"
LIMIT_TRAIN="${LIMIT_TRAIN:-15000}"
rm -f "$STUDY_DIR/optuna.journal" "$STUDY_DIR/optuna.journal.lock"
STORAGE="journal://$STUDY_DIR/optuna.journal"
search() {  # search <name> <pruner>
  local start=$SECONDS
  nnx_run -m experiment=fashion_mnist_mlp hparams_search=fashion_mnist_optuna \
    name="search_$1" hydra.sweeper.study_name="search_$1" hydra.sweeper.n_trials=40 \
    hydra.sweeper.pruner="$2" hydra.sweeper.storage="$STORAGE" \
    dataset.limit_train="$LIMIT_TRAIN" tracking.log_model=false tracking.plots=false \
    hydra.sweep.dir="$STUDY_DIR/outputs/$1" > "$STUDY_DIR/outputs/$1.log" 2>&1
  echo "search_$1: $((SECONDS - start)) s" | tee -a "$STUDY_DIR/outputs/times.txt"
}
mkdir -p "$STUDY_DIR/outputs"
search unpruned none &
# Median pruner: no pruning before 5 trials have finished, nor at a trial's 1st epoch
# (epochs are reported as steps 1, 2, ...; the warm-up skips steps below 2).
search pruned '{name:median,n_startup_trials:5,n_warmup_steps:2}' &
wait
"$PY" "$STUDY_DIR/report.py" --storage "$STORAGE" --uri "$STORE" --out "$RESULTS/summary.md"
cat "$RESULTS/summary.md"
