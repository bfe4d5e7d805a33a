#!/usr/bin/env bash
# The Fashion-MNIST CNN study: the fashion_mnist_cnn preset (two convolutions with batch norm,
# random left-right flips, 30 epochs, as select.sh chose on validation) trained on all 60,000
# training images and scored once on the official test set; beside it the MLP study's winner
# (fashion_mnist_best) retrained the way that study trains it, the two side by side (the CNN
# and the MLP in parallel, one core each). report.py puts them side by side: accuracy,
# parameters, minutes, both confusion matrices, and the CNN's first-layer filters as a picture.
# Run from anywhere: bash experiments/fashion_mnist_cnn/run.sh  (needs the dataset: make data)
source "$(dirname "$0")/../study.sh"
nnx_run experiment=fashion_mnist_cnn hydra.run.dir="$STUDY_DIR/outputs/cnn" &
cnn=$!
nnx_run experiment=fashion_mnist_best hydra.run.dir="$STUDY_DIR/outputs/mlp"
wait "$cnn"  # a failed run fails the script
"$PY" "$STUDY_DIR/report.py" --uri "$STORE" --out "$RESULTS"
cat "$RESULTS/summary.md"
