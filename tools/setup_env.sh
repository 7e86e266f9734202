#!/usr/bin/env bash
# Create ./.venv (if missing) and install rexnet_det with everything it needs.
#
# Order matters: torch first (mmcv compiles against it), then setuptools with
# pkg_resources (mmcv's setup.py and mmengine's `mmdet::` config scope import
# it), then mmcv 2.1.0 built from source with its CPU ops, then mmengine,
# mmdet and the package itself.  A second run only verifies and takes seconds.
set -euo pipefail

VENV=${VENV:-.venv}
PY_BOOT=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MMCV_SPEC="mmcv==2.1.0"
STAMP="$VENV/.rexnet_det_setup"

say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { printf '\033[31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

fingerprint() {
    cat setup.py requirements/*.txt tools/setup_env.sh 2>/dev/null | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in $VENV"
    "$PY_BOOT" -m venv "$VENV" || fail "could not create $VENV with $PY_BOOT"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

check_env() {
    "$PY" tools/check_env.py imports
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] && check_env 2>/dev/null; then
    say "environment in $VENV is up to date"
    exit 0
fi
rm -f "$STAMP"

say "installing build tools and $TORCH_SPEC"
"${PIP[@]}" "pip>=23" "setuptools>=77.0.3,<82" wheel ninja || fail "could not install build tools"
"${PIP[@]}" "$TORCH_SPEC" || fail "could not install $TORCH_SPEC"

"$PY" tools/check_env.py torchvision || fail "fix torchvision first (see above)"

if "$PY" -c "from mmcv.ops import nms, RoIAlign" >/dev/null 2>&1; then
    say "mmcv with compiled ops already installed"
else
    say "building $MMCV_SPEC with CPU ops from source (first time: about 10-16 min on 2 cores)"
    "$PY" -m pip uninstall -y mmcv mmcv-lite >/dev/null 2>&1 || true
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" --no-build-isolation "$MMCV_SPEC" \
        || fail "building $MMCV_SPEC failed (see the compiler output above)"
    "$PY" -c "from mmcv.ops import nms, RoIAlign" \
        || fail "$MMCV_SPEC installed without compiled ops; if torch changed, rebuild with: $VENV/bin/pip install --no-cache-dir --no-build-isolation $MMCV_SPEC (MMCV_WITH_OPS=1)"
fi

say "installing mmengine, mmdet and rexnet_det[tests,deploy] (onnx, onnxruntime, openvino)"
"${PIP[@]}" -r requirements/runtime.txt || fail "could not install requirements/runtime.txt"
"${PIP[@]}" --no-build-isolation -e ".[tests,deploy]" || fail "could not install rexnet_det"

check_env || fail "the environment does not import cleanly (see above)"
fingerprint > "$STAMP"
say "done: $("$PY" -c 'import torch, mmcv, mmengine, mmdet, rexnet_det as r; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, rexnet_det {r.__version__}")')"
