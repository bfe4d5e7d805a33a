#!/usr/bin/env bash
# Install the example plugin into .venv (editable), run its tests, list it, check the configs it
# ships (entry point nnx.configs: optimizer=lion with its tuned values, experiment=checkerboard),
# uninstall it, and check that it is gone from `python -m nnx.list --json` and from Hydra's
# search path. Exits non-zero if any step fails.
#
#   experiments/plugins/check_example_plugin.sh          # from anywhere; PY=... to pick python
#
# It leaves .venv as it found it only if the plugin was not installed before: it always ends
# by uninstalling nnx-example-plugin (also when a step fails).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac  # steps below run in other folders too
PLUGIN=experiments/plugins/nnx-example-plugin
DIST=nnx-example-plugin
pip_() { PIP_FIND_LINKS= "$PY" -m pip "$@"; }
step() { printf '\n== %s\n' "$*"; }
work=$(mktemp -d)
cleanup() {
    pip_ uninstall -y -q "$DIST" >/dev/null 2>&1 || true
    # setuptools leaves these beside the sources of an editable install
    rm -rf "$PLUGIN/build" "$PLUGIN"/*.egg-info "$work"
}
trap cleanup EXIT

test -x "$PY" || { echo "check_example_plugin: $PY not found; run 'make install' first" >&2; exit 1; }
if pip_ show -q "$DIST" >/dev/null 2>&1; then
    echo "check_example_plugin: note: $DIST was already installed; it is uninstalled at the end"
fi

step "install $PLUGIN (editable, --no-deps)"
pip_ install -q --no-deps -e "$PLUGIN"

step "its tests (nnx.testing.check_component on each component, reference values)"
PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -q -p no:cacheprovider "$PLUGIN/tests"

step "python -m nnx.list: the plugin is listed and loads"
"$PY" -m nnx.list --kind activations --kind layers --kind losses --kind optimizers --kind datasets \
    | grep -E "^(  NAME|[a-z]+ \(|.*$DIST)" || true
"$PY" -m nnx.list --json > "$work/installed.json"
"$PY" - "$work/installed.json" "$DIST" <<'PYEOF'
import json, sys
listing, dist = json.load(open(sys.argv[1])), sys.argv[2]
mine = {(c["kind"], c["name"]) for c in listing["components"] if c["distribution"] == dist}
want = {("activations", "mish"), ("layers", "rms_norm"), ("losses", "log_cosh"),
        ("optimizers", "lion"), ("datasets", "checkerboard")}
broken = [f for f in listing["failures"] if f["distribution"] == dist]
if mine != want or broken:
    sys.exit(f"check_example_plugin: listed {sorted(mine)}, expected {sorted(want)}; "
             f"failures: {broken}")
print(f"ok: {len(mine)} components from {dist}, none broken")
PYEOF

step "its configs (nnx.configs): on Hydra's search path, optimizer=lion tuned, its experiment"
here=$PWD
cd "$work"  # nothing is written into the checkout
"$PY" -m nnx.run --info searchpath > searchpath.txt
grep -F "nnx.configs $DIST" searchpath.txt \
    || { cat searchpath.txt; echo "check_example_plugin: its config tree is not searched"; exit 1; }
"$PY" -m nnx.run optimizer=lion --cfg job > lion.yaml
"$PY" - lion.yaml <<'PYEOF'
import sys, yaml
optimizer = yaml.safe_load(open(sys.argv[1]))["optimizer"]
want = {"name": "lion", "lr": 3.0e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1,
        "clip_norm": 0.0}
if optimizer != want:
    sys.exit(f"check_example_plugin: optimizer=lion composed {optimizer}, expected the "
             f"plugin's conf/optimizer/lion.yaml {want}")
print("ok: optimizer=lion comes with the plugin's tuned values (lr 3e-4, weight_decay 0.1)")
PYEOF
"$PY" -m nnx.run experiment=checkerboard trainer.epochs=5 tracking=none \
    hydra.run.dir="$work/run" | grep -E "^nnx checkerboard: dataset checkerboard"
cd "$here"

step "python -m nnx.run model=sequential: a network with the plugin's layer trains"
"$PY" -m nnx.run model=sequential \
    'model.layers=[{name: dense, units: 16}, rms_norm, relu, {name: dense, units: 2}]' \
    dataset=moons trainer.epochs=5 tracking=none "hydra.run.dir=$work/seqrun" | tee "$work/seqrun.txt"
grep -q "^nnx .*dataset moons" "$work/seqrun.txt" || { echo "check_example_plugin: no summary line" >&2; exit 1; }

step "uninstall $DIST"
pip_ uninstall -y -q "$DIST"
"$PY" -m nnx.list --json > "$work/removed.json"
"$PY" - "$work/removed.json" "$DIST" <<'PYEOF'
import json, sys
listing, dist = json.load(open(sys.argv[1])), sys.argv[2]
left = [c for c in listing["components"] + listing["failures"] if c["distribution"] == dist]
builtins = {c["name"] for c in listing["components"] if c["distribution"] == "nnx"}
if left:
    sys.exit(f"check_example_plugin: still listed after uninstalling: {left}")
if not {"relu", "adam", "mse"} <= builtins:
    sys.exit("check_example_plugin: the built-ins are missing after uninstalling the plugin")
print(f"ok: {dist} is gone; {len(builtins)} built-in names still listed")
PYEOF
if "$PY" -m nnx.run --info searchpath | grep -F "nnx.configs $DIST"; then
    echo "check_example_plugin: its config tree is still searched after uninstalling"; exit 1
fi
echo "ok: its config tree is off Hydra's search path"
echo
echo "check_example_plugin: all steps passed"
