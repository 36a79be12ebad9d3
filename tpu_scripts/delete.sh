#!/usr/bin/env bash
# Delete what create.sh made: the TPU VM, or with --queued the queued resource and all its nodes.
#
#   tpu_scripts/delete.sh --name NAME --zone ZONE [--queued] [--slices K] [--project P] [--dry-run]
#
# gcloud asks no questions (--quiet): this is meant to run from scripts.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

queued=0
mapfile -d '' -t args < <(split_equals "$@")
set -- "${args[@]}"
while (($#)); do
  if common_flag "$@"; then
    shift "$SHIFT"
    continue
  fi
  case $1 in
    --queued) queued=1; shift ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
require_common
((SLICES == 1)) || queued=1

mapfile -t location < <(location_flags)
if ((queued)); then
  # --force also deletes the nodes the queued resource created.
  run gcloud compute tpus queued-resources delete "$NAME" "${location[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" "${location[@]}" --quiet
fi
