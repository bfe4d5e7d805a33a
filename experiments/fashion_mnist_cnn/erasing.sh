#!/usr/bin/env bash
# The Fashion-MNIST CNN study's third round of choices, on the same validation split as
# select.sh (54,000 images train, a seeded, stratified 6,000 validate; the epoch of best
# validation accuracy kept). regularise.sh showed that dropout after the convolution blocks
# makes the network underfit (validation 0.91, training 0.86), so this round keeps select.sh's
# winner (flips, no shift, dropout 0.3 before the last layer) and adds milder regularisers,
# side by side:
#   smoothing_wd: label smoothing 0.1 and AdamW's decoupled weight decay 0.05 (weights only);
#   smoothing_wd_erasing: the same with random erasing (half the images lose a box of 2-33%
#                         of their area, in training only).
# 20 epochs each. About 30 minutes on 2 cores. Run from anywhere:
#   bash experiments/fashion_mnist_cnn/erasing.sh
STUDY_DB=erasing.db STUDY_OUTPUTS=outputs/erasing
source "$(dirname "$0")/../study.sh"
mild=(model.layers.1.max_shift=0 loss.label_smoothing=0.1 optimizer=adamw
      optimizer.weight_decay=0.05)
nnx_run experiment=fashion_mnist_cnn_select "${mild[@]}" \
  hydra.run.dir="$STUDY_DIR/outputs/erasing/smoothing_wd" &
a=$!
nnx_run experiment=fashion_mnist_cnn_select "${mild[@]}" model.layers.2.p=0.5 \
  hydra.run.dir="$STUDY_DIR/outputs/erasing/smoothing_wd_erasing" &
b=$!
wait "$a" && wait "$b"  # a failed run fails the script
"$PY" "$STUDY_DIR/selection.py" --uri "$STORE" --out "$RESULTS" --name erasing
cat "$RESULTS/erasing.md"
