#!/usr/bin/env bash
# The digits study: the digits_mlp preset (64-64-10 ReLU, Adam) and the digits_cnn preset,
# each over the same 5 seeds.
# Run from anywhere: bash experiments/digits/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=digits_mlp seed=0,1,2,3,4 hydra.sweep.dir="$STUDY_DIR/outputs/seeds"
nnx_compare --experiment digits_mlp --metric test_accuracy
# The digits_cnn preset over the same five seeds (the same splits), beside the MLP.
nnx_run -m experiment=digits_cnn seed=0,1,2,3,4 hydra.sweep.dir="$STUDY_DIR/outputs/cnn_seeds"
nnx_compare --experiment digits_cnn --metric test_accuracy --out "$RESULTS/cnn"
