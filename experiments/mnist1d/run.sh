#!/usr/bin/env bash
# The MNIST-1D study: the mnist1d_mlp preset against the published 68% MLP baseline, with
# the plain MLP it improves on; then the mnist1d_cnn preset against the paper's 94% CNN.
# Every choice is made on the validation split (800 of the 4,000 training signals); the test
# split is read once, for the table. Run from anywhere: bash experiments/mnist1d/run.sh
source "$(dirname "$0")/../study.sh"
nnx_run -m experiment=mnist1d_mlp \
  'model.hidden=[256,256],[256,256,256]' model.dropout=0.0,0.2 \
  hydra.sweep.dir="$STUDY_DIR/outputs/sweep"
nnx_compare --experiment mnist1d_mlp --metric test_accuracy

# The CNN: the preset's learning rate chosen among three on validation accuracy, beside the
# paper's own CNN (three strided convolutions of 25 channels, no pooling, no batch norm,
# Adam at 0.01 for 6,000 steps: 150 epochs of 40 batches) trained here the same way.
nnx_run -m experiment=mnist1d_cnn optimizer.lr=0.001,0.003,0.01 \
  hydra.sweep.dir="$STUDY_DIR/outputs/cnn"
nnx_run experiment=mnist1d_cnn name=mnist1d_cnn \
  'model.layers=[{name:conv1d,channels:25,kernel:5,stride:2,padding:1},relu,{name:conv1d,channels:25,kernel:3,stride:2,padding:1},relu,{name:conv1d,channels:25,kernel:3,stride:2,padding:1},relu,flatten,{name:dense,units:10}]' \
  optimizer=adam optimizer.lr=0.01 optimizer.weight_decay=0 schedule=constant trainer.epochs=150 \
  hydra.run.dir="$STUDY_DIR/outputs/paper_cnn"
nnx_compare --experiment mnist1d_cnn --metric val_accuracy --out "$RESULTS/cnn"
