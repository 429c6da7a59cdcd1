#!/usr/bin/env bash
# Rockchip's compiler (rknn-toolkit2) in its own virtualenv, outside the repo: it pins old numpy,
# onnx and protobuf that the project's own environment must not see (DESIGN.md "Devices and boards").
# Idempotent: when the venv already holds exactly this set and `from rknn.api import RKNN` works,
# it returns at once. compiler/rknn.py finds the venv at the same path.
#
#   .ci/rknn-env.sh            # create or update ${SITEWARDEN_RKNN_VENV:-~/.cache/sitewarden/rknn-venv}
#   .ci/rknn-env.sh --force    # rebuild from scratch
set -euo pipefail

VENV="${SITEWARDEN_RKNN_VENV:-$HOME/.cache/sitewarden/rknn-venv}"
# rknn-toolkit2 2.5.0 ships wheels for CPython 3.6-3.12; python3.11 is what CI and the lead checked
PY="${SITEWARDEN_RKNN_PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PY" -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 12))'; then
  echo "rknn-toolkit2 2.5.0 needs Python 3.8-3.12; $PY is $("$PY" -V 2>&1). Set SITEWARDEN_RKNN_PYTHON." >&2
  exit 1
fi
TOOLKIT="rknn-toolkit2==2.5.0"
# Its own requirements, pinned where it pins them (numpy<=1.26.4, onnx<=1.18, protobuf<=4.25.4).
# torch: the toolkit imports it at load time but never uses it for ONNX input; the local CPU wheel
# (pip find-links) gave bit-identical .rknn files to its supported torch 2.4 (a 3.3 GB download).
# setuptools<81: the toolkit imports pkg_resources.
# The rest are pinned to the versions that resolved and were checked (2026-11-25) so CI is repeatable.
REQS=(
  "numpy==1.26.4" "onnx==1.18.0" "protobuf==4.25.4" "onnxruntime==1.26.0" "scipy==1.17.1"
  "opencv-python-headless==4.11.0.86" "fast-histogram==0.14" "ruamel.yaml==0.19.1" "psutil==7.2.2"
  "tqdm==4.70.1" "setuptools==80.10.2" "torch==2.13.0"
)
STAMP="$VENV/.sitewarden-rknn"
WANT="$(printf '%s\n' "$TOOLKIT" "${REQS[@]}" "$("$PY" -c 'import sys; print(sys.version.split()[0])')")"

if [[ "${1:-}" == "--force" ]]; then rm -rf "$VENV"; fi
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
   && "$VENV/bin/python" -c "from rknn.api import RKNN" >/dev/null 2>&1; then
  echo "rknn-toolkit2 venv ready: $VENV"
  exit 0
fi

echo "setting up rknn-toolkit2 venv at $VENV (a few minutes the first time) ..."
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip
# torch from the local CPU wheel only (never a CUDA build): --no-index would also block its pure
# Python deps, so install those from the index and torch itself with find-links.
"${PIP[@]}" install --quiet "${REQS[@]}"
"${PIP[@]}" install --quiet --no-deps "$TOOLKIT"
"$VENV/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
from rknn.api import RKNN  # noqa: F401  (imports torch, onnx, pkg_resources: the whole chain)
import numpy, onnx, google.protobuf as pb
print(f"rknn-toolkit2 OK: numpy {numpy.__version__}, onnx {onnx.__version__}, protobuf {pb.__version__}")
PY
printf '%s' "$WANT" > "$STAMP"
echo "rknn-toolkit2 venv ready: $VENV"
