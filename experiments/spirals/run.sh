#!/usr/bin/env bash
# The spirals study: hidden activation x optimizer on 3-arm spirals (12 runs), decision
# boundaries side by side. Run from anywhere: bash experiments/spirals/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=spirals tracking.log_model=false \
  model.activation=sigmoid,tanh,relu,gelu optimizer=sgd,rmsprop,adam \
  hydra.sweep.dir="$STUDY_DIR/outputs/sweep"
nnx_compare --experiment spirals --metric val_accuracy
"$PY" "$STUDY_DIR/boundaries.py" --uri "$STORE" --out "$RESULTS/boundaries.png"
