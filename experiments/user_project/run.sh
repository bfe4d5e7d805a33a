#!/usr/bin/env bash
# The example project's runs, from its own folder, with whichever nnx is installed (`nnx` on
# PATH, or NNX="python -m nnx.cli"): bash run.sh (also from a copy of this folder anywhere).
set -euo pipefail
cd "$(dirname "$0")"
NNX=${NNX:-nnx}
$NNX run --config-dir conf experiment=noisy_moons
$NNX run --config-dir conf -m experiment=noisy_moons_adam optimizer.lr=0.003,0.01
$NNX compare --experiment noisy_moons --no-plots
