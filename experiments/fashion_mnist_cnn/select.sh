#!/usr/bin/env bash
# The Fashion-MNIST CNN study's choices, made on validation: each run trains on 54,000 images
# while the other 6,000 (a seeded, stratified 10%) validate, and keeps its epoch of best
# validation accuracy. First shifts of 0 or 1 pixel (20 epochs each, side by side on the two
# cores), then no shift for 30 epochs. What won (no shift) went on to regularise.sh; the
# fashion_mnist_cnn preset is what the last round (deeper.sh) chose. Each run
# also scores the test set at its end (every nnx run does); nothing here reads it.
# About 33 + 45 minutes on 2 cores. Run from anywhere: bash experiments/fashion_mnist_cnn/select.sh
STUDY_DB=select.db STUDY_OUTPUTS=outputs/select
source "$(dirname "$0")/../study.sh"
pids=()
for shift in 0 1; do
  nnx_run experiment=fashion_mnist_cnn_select model.layers.1.max_shift=$shift \
    hydra.run.dir="$STUDY_DIR/outputs/select/shift$shift" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # a failed run fails the script
# (first run as experiment=fashion_mnist_cnn of that day, the same network: a shift of 0, the
# erasing and the dropout layers at 0 are the identity and draw nothing)
nnx_run experiment=fashion_mnist_cnn_select model.layers.1.max_shift=0 trainer.epochs=30 \
  trainer.early_stopping.patience=30 hydra.run.dir="$STUDY_DIR/outputs/select/epochs30"
"$PY" "$STUDY_DIR/selection.py" --uri "$STORE" --out "$RESULTS"
cat "$RESULTS/selection.md"
