#!/usr/bin/env bash
# Start `mmjax train` on every worker of every slice (detached; see logs.sh), or stop it.
#
#   tpu_scripts/launch.sh --name NAME --zone ZONE --config FILE[:variant] --workdir gs://BUCKET/runs/RUN
#                         --data-dir gs://BUCKET/tensorflow_datasets [--env NAME=VALUE]... [--no-prepare]
#                         [--slices K] [--project P] [--dry-run] [-- --config.key=value ...]
#   tpu_scripts/launch.sh --name NAME --zone ZONE --stop [--slices K] [--dry-run]
#
#   --workdir     where checkpoints and metrics go; every host must see the same one, hence gs://
#   --data-dir    the TFDS data dir (config.data.data_dir), read by every host
#   --env         an environment variable for the run, e.g. --env MMJAX_HEARTBEAT_TIMEOUT=300 (repeatable)
#   --no-prepare  skip preparing the dataset once, on worker 0, before the launch (it is idempotent, but
#                 generated datasets must not be built by every host at once)
#   --stop        send SIGTERM to the run on every worker: a preemption notice, so all hosts save a
#                 checkpoint at the same step and exit; a later launch with the same workdir resumes
#   after --      config overrides, passed to `mmjax train` unchanged
# Output of each worker: ~/mmjax-train.log on that worker. Common flags: see _common.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

config="" workdir="" data_dir="" prepare=1 stop=0
envs=(MMJAX_DISTRIBUTED=tpu) # the workers are TPU VMs: JAX finds the other hosts from the TPU metadata
overrides=()
mapfile -d '' -t args < <(split_equals "$@")
set -- "${args[@]}"
while (($#)); do
  if common_flag "$@"; then
    shift "$SHIFT"
    continue
  fi
  case $1 in
    --config) config=${2:?--config needs a value}; shift 2 ;;
    --workdir) workdir=${2:?--workdir needs a value}; shift 2 ;;
    --data-dir) data_dir=${2:?--data-dir needs a value}; shift 2 ;;
    --env)
      [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs NAME=VALUE, got '${2:-}'"
      envs+=("$2")
      shift 2
      ;;
    --no-prepare) prepare=0; shift ;;
    --stop) stop=1; shift ;;
    --) shift; overrides=("$@"); break ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (config overrides go after --; see --help)" ;;
  esac
done
require_common

# shellcheck disable=SC2016  # $HOME is the worker's: it must reach the remote shell unexpanded
log='"$HOME"/mmjax-train.log' pidfile='"$HOME"/mmjax-train.pid'
if ((stop)); then
  while read -r node; do
    ssh_all "$node" "if test -f $pidfile; then kill \$(cat $pidfile) 2>/dev/null || true; rm -f $pidfile; fi"
  done < <(nodes)
  exit 0
fi
[[ -n $config ]] || die "--config is required"
[[ -n $workdir ]] || die "--workdir is required"
[[ -n $data_dir ]] || die "--data-dir is required"
[[ $workdir == gs://* ]] || echo "$(basename "$0"): warning: --workdir $workdir is not on GCS; every host must see it" >&2

train=(.venv/bin/python -m mmjax train --config "$config" --workdir "$workdir" "--config.data.data_dir=$data_dir")
train+=("${overrides[@]}")
mapfile -t location < <(location_flags)
first_node=$(nodes | head -n 1)
if ((prepare)); then
  # Builds a generated dataset into the data dir if missing (a no-op for an already prepared TFDS dataset).
  prepare_py='import sys; from mmjax import config, data; data.open_source(config.load_config(sys.argv[1], sys.argv[2:]).data, "train")'
  prepare_cmd=(.venv/bin/python -c "$prepare_py" "$config" "--config.data.data_dir=$data_dir" "${overrides[@]}")
  run gcloud compute tpus tpu-vm ssh "$first_node" "${location[@]}" --worker=0 \
    --command="cd mmjax && $(join_quoted "${prepare_cmd[@]}")"
fi
# setsid + nohup + no stdin: the run outlives the ssh session that started it.
remote="cd mmjax && $(join_quoted env "${envs[@]}") setsid nohup $(join_quoted "${train[@]}")"
remote+=" > $log 2>&1 < /dev/null & echo \$! > $pidfile"
while read -r node; do
  ssh_all "$node" "$remote"
done < <(nodes)
if ((!DRY_RUN)); then
  echo "$(basename "$0"): started; follow it with: tpu_scripts/logs.sh --name $NAME --zone $ZONE" >&2
fi
