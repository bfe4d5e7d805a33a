#!/usr/bin/env bash
# The Fashion-MNIST CNN study's fourth round, on the same validation split as select.sh
# (54,000 images train, a seeded, stratified 6,000 validate; the epoch of best validation
# accuracy kept). Dropout after the blocks (regularise.sh) and random erasing (erasing.sh)
# made the network underfit, and label smoothing with weight decay left it where it was, so
# this round gives it more capacity where it is cheap: a third convolution (64 3x3, batch
# norm, relu) on the 7x7 maps, about 45% more arithmetic a step. The network is the
# fashion_mnist_cnn preset, here trained on the 54,000 for 20 epochs. About 35 minutes on one
# core. Run from anywhere: bash experiments/fashion_mnist_cnn/deeper.sh
STUDY_DB=deeper.db STUDY_OUTPUTS=outputs/deeper
source "$(dirname "$0")/../study.sh"
nnx_run experiment=fashion_mnist_cnn name=fashion_mnist_cnn_select trainer.val_split=0.1 \
  objective=val_accuracy trainer.early_stopping.patience=20 \
  trainer.early_stopping.monitor=val_accuracy hydra.run.dir="$STUDY_DIR/outputs/deeper/conv3"
"$PY" "$STUDY_DIR/selection.py" --uri "$STORE" --out "$RESULTS" --name deeper
cat "$RESULTS/deeper.md"
