#!/usr/bin/env bash
# The digits study: the digits_mlp preset (64-64-10 ReLU, Adam) over 5 seeds.
# Run from anywhere: bash experiments/digits/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=digits_mlp seed=0,1,2,3,4 hydra.sweep.dir="$STUDY_DIR/outputs/seeds"
nnx_compare --experiment digits_mlp --metric test_accuracy
