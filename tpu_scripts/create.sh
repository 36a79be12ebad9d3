#!/usr/bin/env bash
# Create a Cloud TPU VM (one slice), or a queued resource (waits for capacity; needed for multi-slice).
#
#   tpu_scripts/create.sh --name NAME --zone ZONE [--accelerator-type TYPE] [--version RUNTIME]
#                         [--queued] [--slices K] [--spot] [--project P] [--dry-run]
#
#   --accelerator-type  e.g. v5litepod-16 (default), v4-32, v5p-128, v6e-16
#   --version           TPU software (runtime) version; default from the accelerator type:
#                       v4 tpu-ubuntu2204-base, v5litepod v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
#   --queued            request a queued resource named NAME (node NAME, or nodes NAME-0.. with --slices > 1)
#   --slices K          K slices joined over the data-centre network (implies --queued)
#   --spot              Spot capacity (cheaper, may be preempted: mmjax saves a checkpoint on the notice)
# Common flags (--name --zone --project --slices --dry-run): see _common.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

accelerator=v5litepod-16 version="" queued=0 spot=0
mapfile -d '' -t args < <(split_equals "$@")
set -- "${args[@]}"
while (($#)); do
  if common_flag "$@"; then
    shift "$SHIFT"
    continue
  fi
  case $1 in
    --accelerator-type) accelerator=${2:?--accelerator-type needs a value}; shift 2 ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --queued) queued=1; shift ;;
    --spot) spot=1; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
require_common
((SLICES == 1)) || queued=1
if [[ -z $version ]]; then
  case $accelerator in
    v4-*) version=tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) version=v2-alpha-tpuv5-lite ;;
    v5p-*) version=v2-alpha-tpuv5 ;;
    v6e-*) version=v2-alpha-tpuv6e ;;
    *) die "no default runtime version for $accelerator; pass --version" ;;
  esac
fi

mapfile -t location < <(location_flags)
extra=()
((spot)) && extra+=(--spot)
if ((queued)); then
  if ((SLICES == 1)); then
    nodes_flags=(--node-id="$NAME")
  else
    nodes_flags=(--node-count="$SLICES" --node-prefix="$NAME")
  fi
  run gcloud compute tpus queued-resources create "$NAME" "${location[@]}" --accelerator-type="$accelerator" \
    --runtime-version="$version" "${nodes_flags[@]}" "${extra[@]}"
  if ((!DRY_RUN)); then
    echo "$(basename "$0"): requested; it is ready when its state is ACTIVE:" >&2
    echo "  gcloud compute tpus queued-resources describe $NAME --zone=$ZONE" >&2
  fi
else
  run gcloud compute tpus tpu-vm create "$NAME" "${location[@]}" --accelerator-type="$accelerator" \
    --version="$version" "${extra[@]}"
fi
