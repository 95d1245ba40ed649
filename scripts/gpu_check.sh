#!/usr/bin/env bash
# The prepared GPU check: the GPU parts of the benchmark in one call, for any session
# that is lent a GPU. Run scripts/gpu_wheels.sh here first, then on the device machine
# (the device tool: carry .whl, timeout_s 540, EDGESPLIT_COMMIT set to the commit):
#
#     bash scripts/gpu_check.sh
#
# It installs edgesplit as the README tells a cluster user (pip install -e '.[cuda]'),
# offline from .whl/ into a virtual environment in /tmp that sees the image's packages
# (the image's python3 is itself a venv's, so --system-site-packages would not), runs
# `scripts/bench.py --device gpu --preset gpu-check` (the parts lanes, batches and
# million, the report written as each ends; cut at 7 minutes), copies bench-gpu.md and
# .json from results/bench/ to $OUT (when set). It changes nothing outside /tmp and this
# tree: no device settings, no global packages, its compile cache in /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=/tmp/edgesplit-gpu
python="${PYTHON:-python3}"  # the image's Python, with JAX and its CUDA plugin
"$python" -m venv --without-pip "$venv" || exit 1
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$python" -c "import site; print('\n'.join(site.getsitepackages()))" > "$site/_image.pth"
install() {  # the image's pip, installing into the new venv
    "$venv/bin/python" -m pip install -q --no-index --find-links .whl --no-build-isolation "$@"
}
if install -e '.[cuda]'; then
    installed="pip install -e '.[cuda]' (offline, from .whl)"
else  # the image's JAX CUDA packages may not match the extra's pins exactly
    install -e . || exit 1
    installed="pip install -e . (the '.[cuda]' extra did not resolve offline; the image's JAX CUDA plugin)"
fi
echo "installed: $installed"
"$venv/bin/python" -c "import jax, zarr, edgesplit; print('JAX', jax.__version__, jax.devices())" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONUNBUFFERED=1 EDGESPLIT_COMPILE_CACHE=/tmp/edgesplit-xla
export EDGESPLIT_COMMIT="${EDGESPLIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
timeout 420 "$venv/bin/python" scripts/bench.py --device gpu --preset gpu-check
status=$?
if [ -n "${OUT:-}" ]; then cp results/bench/bench-gpu.md results/bench/bench-gpu.json "$OUT/"; fi
rm -rf /tmp/edgesplit-xla
exit $status
