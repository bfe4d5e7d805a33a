#!/usr/bin/env bash
# The Fashion-MNIST CNN study's choices, made on validation: each run trains on 54,000 images
# while the other 6,000 (a seeded, stratified 10%) validate, and keeps its epoch of best
# validation accuracy. First shifts of 0 or 1 pixel (20 epochs each, side by side on the two
# cores), then no shift for 30 epochs. What won (no shift, 30 epochs) is the fashion_mnist_cnn
# preset, which run.sh retrains on all 60,000 images and scores once on the test set. Each run
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
nnx_run experiment=fashion_mnist_cnn name=fashion_mnist_cnn_select trainer.val_split=0.1 \
  objective=val_accuracy trainer.early_stopping.patience=30 \
  trainer.early_stopping.monitor=val_accuracy hydra.run.dir="$STUDY_DIR/outputs/select/epochs30"
"$PY" "$STUDY_DIR/selection.py" --uri "$STORE" --out "$RESULTS"
cat "$RESULTS/selection.md"
