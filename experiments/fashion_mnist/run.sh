#!/usr/bin/env bash
# The Fashion-MNIST study: an Optuna search (12 trials of 10 epochs, scored on a 10%
# validation split), then the winner retrained for 30 epochs on all 60,000 images and scored
# once on the official test set, beside the plain 20-epoch baseline preset.
# Run from anywhere: bash experiments/fashion_mnist/run.sh   (about 15 minutes)
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=fashion_mnist_mlp hparams_search=fashion_mnist_optuna name=fashion_search \
  tracking.log_model=false hydra.sweep.dir="$STUDY_DIR/outputs/search"
nnx_compare --experiment fashion_search --metric val_accuracy
mv "$RESULTS/runs.csv" "$RESULTS/search.csv"; mv "$RESULTS/runs.md" "$RESULTS/search.md"
# The winner, as conf/experiment/fashion_mnist_best.yaml records it, and the plain baseline.
nnx_run experiment=fashion_mnist_best hydra.run.dir="$STUDY_DIR/outputs/best"
# The baseline trains on all 60,000 images too (no validation set), as the winner does.
nnx_run experiment=fashion_mnist_mlp trainer.val_split=0 objective=loss \
  hydra.run.dir="$STUDY_DIR/outputs/baseline"
nnx_compare --experiment fashion_mnist_best --metric test_accuracy
