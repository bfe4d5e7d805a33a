# Shared settings of the studies: sourced by experiments/<study>/run.sh.
# Each study logs to its own MLflow store beside its README (ignored by git) and writes its
# tables and pictures to results/, so a rerun reproduces exactly what the README quotes.
set -euo pipefail
STUDY_DIR="${STUDY_DIR:-$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)}"
ROOT="$(cd "$STUDY_DIR/../.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
# STUDY_DB: the store's file name, for a study with two scripts (one store each)
STUDY_DB="$STUDY_DIR/${STUDY_DB:-mlflow.db}"
STORE="sqlite:///$STUDY_DB"
RESULTS="$STUDY_DIR/results"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"  # repeatable timings
# A fresh store each time: the tables show this run of the study only.
rm -f "$STUDY_DB"
rm -rf "$STUDY_DIR/${STUDY_OUTPUTS:-outputs}"
mkdir -p "$RESULTS"
nnx_run() { "$PY" -m nnx.run "$@" tracking.uri="$STORE"; }
nnx_compare() { "$PY" -m nnx.compare --uri "$STORE" --out "$RESULTS" "$@"; }
