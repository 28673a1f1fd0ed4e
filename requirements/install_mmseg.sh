#!/usr/bin/env bash
# Installs the optional mmsegmentation extra (mmengine, mmcv with its compiled ops, mmsegmentation) into a venv:
#   bash requirements/install_mmseg.sh [VENV]          (make mmseg)
# Versions are the pins of requirements/lock.txt. mmcv has no wheel for this torch, so it is built from its
# PyPI sdist (CPU ops unless FORCE_CUDA=1) and the wheel is cached, keyed by mmcv, torch and python versions:
#   $HARNESS_CACHE/wheels (default ~/.cache/harness/wheels); MAX_JOBS compile jobs (default 2).
# What the build needs that the venv may not have (setuptools<81 for pkg_resources, ninja) goes into a
# throw-away folder on PYTHONPATH, so the venv's own packages are never changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY="$VENV/bin/python"
LOCK=requirements/lock.txt
pin() { grep -i "^$1==" "$LOCK" | cut -d= -f3; }
MMCV=$(pin mmcv)
BUILD_TOOLS=("setuptools==80.10.2" "ninja==1.13.2")
PIP=("$PY" -m pip --disable-pip-version-check)
key=$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}")')
CACHE="${HARNESS_CACHE:-$HOME/.cache/harness}/wheels/mmcv-$MMCV-$key"
wheel=$(ls "$CACHE"/mmcv-"$MMCV"-*.whl 2>/dev/null | head -1 || true)

if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building mmcv $MMCV for $key (cache: $CACHE; about 10 minutes on 2 cores)"
  "${PIP[@]}" install -q --target "$work/tools" "${BUILD_TOOLS[@]}"
  export PYTHONPATH="$work/tools${PYTHONPATH:+:$PYTHONPATH}" PATH="$work/tools/bin:$PATH"
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV" -d "$work"
  tar -xzf "$work/mmcv-$MMCV.tar.gz" -C "$work"
  # mmcv's setup.py hard-codes -std=c++14/17 after any CXXFLAGS; torch >= 2.10's headers need C++20
  sed -i -E "s/'-std=c\+\+1[47]'/'-std=c++20'/g" "$work/mmcv-$MMCV/setup.py"
  # CFLAGS replaces python's own (-g -O3 ...): no debug info, a quicker compile and a far smaller wheel
  CFLAGS="-DNDEBUG -O2 -g0 -fwrapv ${CFLAGS:-}" MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} \
    "${PIP[@]}" wheel -q --no-deps --no-build-isolation "$work/mmcv-$MMCV" -w "$work/wheel"
  mkdir -p "$CACHE"
  built=$(ls "$work"/wheel/mmcv-*.whl)
  cp "$built" "$CACHE/.partial" && mv "$CACHE/.partial" "$CACHE/$(basename "$built")"
  wheel="$CACHE/$(basename "$built")"
fi

echo "installing $wheel, mmengine $(pin mmengine), mmsegmentation $(pin mmsegmentation)"
# -c: every package already in the venv keeps its pinned version (torch, numpy, ...)
"${PIP[@]}" install -q -c "$LOCK" "$wheel" mmengine mmsegmentation ftfy regex
# mmsegmentation's wheel also installs its own test suite as a top-level package `tests`, which shadows the
# project's tests (`from tests.micro import ...`); it is not part of mmseg, so it goes
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if grep -q '^tests/__init__.py' "$site"/mmsegmentation-*.dist-info/RECORD 2>/dev/null; then rm -rf "$site/tests"; fi
"$PY" -c 'import mmcv, mmcv.ops, mmseg.models; print("mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
