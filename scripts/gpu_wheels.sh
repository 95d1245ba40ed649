#!/usr/bin/env bash
# Download, here, the wheels that scripts/gpu_check.sh installs on a GPU machine that
# reaches no package registry: edgesplit's dependencies that the device image lacks
# (its Python 3.12 holds JAX with the CUDA 13 plugin, NumPy, xarray and tqdm; not zarr
# or dask). They go to .whl/ (git-ignored), which the device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 \
    dask==2026.8.0 partd==1.4.2 locket==1.0.0
ls .whl
