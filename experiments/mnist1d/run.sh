#!/usr/bin/env bash
# The MNIST-1D study: the mnist1d_mlp preset against the published 68% MLP baseline, with
# the plain MLP it improves on. Run from anywhere: bash experiments/mnist1d/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=mnist1d_mlp \
  'model.hidden=[256,256],[256,256,256]' model.dropout=0.0,0.2 \
  hydra.sweep.dir="$STUDY_DIR/outputs/sweep"
nnx_compare --experiment mnist1d_mlp --metric test_accuracy
