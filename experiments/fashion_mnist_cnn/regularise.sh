#!/usr/bin/env bash
# The Fashion-MNIST CNN study's second round of choices, on the same validation split as
# select.sh (54,000 images train, a seeded, stratified 6,000 validate; the epoch of best
# validation accuracy kept). select.sh left training accuracy 0.955 against 0.933 on
# validation, so this round tries regularisation at the same cost a step, side by side:
#   dropout: dropout 0.25 after each convolution block and 0.5 (not 0.3) before the last layer;
#   dropout_wd: the same with AdamW's decoupled weight decay 0.05 (weights only, not biases
#               or batch norm's scale and shift).
# No shift, 20 epochs (select.sh: 20 and 30 epochs equal within 3 images). About 30 minutes on
# 2 cores. Run from anywhere: bash experiments/fashion_mnist_cnn/regularise.sh
STUDY_DB=regularise.db STUDY_OUTPUTS=outputs/regularise
source "$(dirname "$0")/../study.sh"
dropout=(model.layers.1.max_shift=0 model.layers.7.rate=0.25 model.layers.12.rate=0.25
         model.layers.16.rate=0.5)
nnx_run experiment=fashion_mnist_cnn_select "${dropout[@]}" \
  hydra.run.dir="$STUDY_DIR/outputs/regularise/dropout" &
a=$!
nnx_run experiment=fashion_mnist_cnn_select "${dropout[@]}" optimizer=adamw \
  optimizer.weight_decay=0.05 hydra.run.dir="$STUDY_DIR/outputs/regularise/dropout_wd" &
b=$!
wait "$a" && wait "$b"  # a failed run fails the script
"$PY" "$STUDY_DIR/selection.py" --uri "$STORE" --out "$RESULTS" --name regularisation
cat "$RESULTS/regularisation.md"
