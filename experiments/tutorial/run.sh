#!/usr/bin/env bash
# The tutorial study: the classic network reproduced, then its hidden activation, learning
# rate and hidden width swept (27 runs). Run from anywhere: bash experiments/tutorial/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run experiment=tutorial hydra.run.dir="$STUDY_DIR/outputs/reproduce"
nnx_run -m experiment=tutorial print_predictions=false tracking.log_model=false \
  model.activation=sigmoid,tanh,relu optimizer.lr=0.1,1.0,3.0 'model.hidden=[2],[4],[8]' \
  hydra.sweep.dir="$STUDY_DIR/outputs/sweep"
nnx_compare --experiment tutorial --metric loss
