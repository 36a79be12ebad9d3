#!/usr/bin/env bash
# Show the output of the run launch.sh started (~/mmjax-train.log on each worker).
#
#   tpu_scripts/logs.sh --name NAME --zone ZONE [--worker N|all] [--slice I] [--lines N] [--no-follow]
#                       [--slices K] [--project P] [--dry-run]
#
#   --worker   which worker of the slice (default 0, which logs metrics and progress); "all" prints every
#              worker's last lines once, without following
#   --slice    which slice, with --slices K > 1 (default 0)
#   --lines    how many lines of history (default 100)
# Common flags: see _common.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

worker=0 slice=0 lines=100 follow=1
mapfile -d '' -t args < <(split_equals "$@")
set -- "${args[@]}"
while (($#)); do
  if common_flag "$@"; then
    shift "$SHIFT"
    continue
  fi
  case $1 in
    --worker) worker=${2:?--worker needs a value}; shift 2 ;;
    --slice) slice=${2:?--slice needs a value}; shift 2 ;;
    --lines) lines=${2:?--lines needs a value}; shift 2 ;;
    --no-follow) follow=0; shift ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
require_common
[[ $worker == all || $worker =~ ^[0-9]+$ ]] || die "--worker must be a number or 'all', got '$worker'"
[[ $lines =~ ^[0-9]+$ ]] || die "--lines must be a number, got '$lines'"
if ! [[ $slice =~ ^[0-9]+$ ]] || ((slice >= SLICES)); then die "--slice must be in [0, $SLICES), got '$slice'"; fi

[[ $worker == all ]] && follow=0
node=$(nodes | sed -n "$((slice + 1))p")
tail_flags="-n $lines"
((follow)) && tail_flags+=" -F"
mapfile -t location < <(location_flags)
run gcloud compute tpus tpu-vm ssh "$node" "${location[@]}" --worker="$worker" \
  --command="tail $tail_flags \"\$HOME\"/mmjax-train.log"
