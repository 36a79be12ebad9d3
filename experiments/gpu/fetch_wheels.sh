#!/usr/bin/env bash
# Downloads the wheels experiments/gpu/run.sh installs on a GPU machine with no network: mmjax's dependencies that
# a CUDA image with jax, flax, optax, orbax-checkpoint, chex, torch and transformers usually lacks.
#
#     experiments/gpu/fetch_wheels.sh [PYTHON_VERSION] [DEST]     # default 3.12 and .whl
set -euo pipefail
cd "$(dirname "$0")/../.."
version="${1:-3.12}"
dest="${2:-.whl}"
mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 any; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
  "${platforms[@]}" -d "$dest" \
  array_record==0.8.6 dm-tree==0.1.10 docstring_parser==0.18.0 grain==0.2.18 immutabledict==4.3.1 \
  ml_collections==1.1.0 simple-parsing==0.1.9 tensorboardX==2.6.5 tensorflow-datasets==4.9.10 \
  tensorflow-metadata==1.21.0 termcolor==3.3.0 toml==0.10.2 portpicker==1.6.0 googleapis-common-protos==1.76.0
# promise ships only as a source archive; it is pure Python, so a wheel built here installs anywhere
python3 -m pip wheel -q --no-deps promise==2.3 -w "$dest"
ls "$dest"
