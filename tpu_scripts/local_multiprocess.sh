#!/usr/bin/env bash
# Run one mmjax command as N JAX processes on this machine, each with its own fake CPU devices, talking over
# 127.0.0.1: the multi-host code paths (coordination service, cross-process collectives, per-process data
# shards, multi-host checkpoints) without a cluster.
#
#   tpu_scripts/local_multiprocess.sh [options] N [train|eval|bench] <mmjax args...>
#
#   --devices-per-process K   fake CPU devices per process (default 1): the mesh spans N*K devices
#   --port P                  coordinator port (default: a free one)
#   --log-dir DIR             where processes 1..N-1 write process_<i>.log (default: a new temp dir);
#                             process 0 writes to this terminal
#   --grace S                 seconds the others get after one fails, between SIGTERM and SIGKILL (default 5)
#   --dry-run                 print each process's command and exit
#
# The command defaults to `train`. Exits 0 if every process does; otherwise with the first failing process's
# status, after stopping the rest. SIGINT/SIGTERM to this script are passed on to every process (SIGTERM is
# a preemption notice: they save a checkpoint at a common step and exit).
# Environment: PYTHON (default: the repo's .venv/bin/python, else python3); XLA_FLAGS and JAX_PLATFORMS are
# extended/defaulted for each process; MMJAX_HEARTBEAT_TIMEOUT etc. pass through (see mmjax/distributed.py).
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
devices=1 port="" log_dir="" grace=5 dry_run=0
while (($#)); do
  case $1 in
    --devices-per-process) devices=${2:?--devices-per-process needs a value}; shift 2 ;;
    --devices-per-process=*) devices=${1#*=}; shift ;;
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --log-dir) log_dir=${2:?--log-dir needs a value}; shift 2 ;;
    --log-dir=*) log_dir=${1#*=}; shift ;;
    --grace) grace=${2:?--grace needs a value}; shift 2 ;;
    --grace=*) grace=${1#*=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "local_multiprocess.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($# >= 1)) || usage
num=$1
shift
[[ $num =~ ^[1-9][0-9]*$ ]] || { echo "local_multiprocess.sh: N must be a positive integer, got '$num'" >&2; exit 2; }
[[ $devices =~ ^[1-9][0-9]*$ ]] || { echo "local_multiprocess.sh: bad --devices-per-process '$devices'" >&2; exit 2; }
case ${1:-} in
  train | eval | bench) ;;
  *) set -- train "$@" ;;
esac

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $repo_root/.venv/bin/python ]]; then PYTHON=$repo_root/.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z $port ]]; then
  # The kernel picks a free port; a race with another program binding it in between is possible but rare.
  port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
xla_flags="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
xla_flags=${xla_flags# }

process_env() {  # the environment of process $1, as NAME=VALUE words
  printf '%s\n' "XLA_FLAGS=$xla_flags" "JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}" "MMJAX_COORDINATOR=127.0.0.1:$port" \
    "MMJAX_NUM_PROCESSES=$num" "MMJAX_PROCESS_ID=$1"
}

if ((dry_run)); then
  for ((i = 0; i < num; i++)); do
    words=()
    while IFS= read -r w; do words+=("$w"); done < <(process_env "$i")
    words+=("$PYTHON" -m mmjax "$@")
    out=""
    for w in "${words[@]}"; do
      if [[ $w =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+="$w "; else out+="'${w//\'/\'\\\'\'}' "; fi
    done
    echo "${out% }"
  done
  exit 0
fi

if [[ -z $log_dir ]]; then log_dir=$(mktemp -d "${TMPDIR:-/tmp}/mmjax-local-XXXXXX"); fi
mkdir -p "$log_dir"
cd "$repo_root"

pids=()
stop_all() {  # stop_all SIGNAL: signal every process still running
  local pid
  for pid in "${pids[@]}"; do
    if [[ -n $pid ]]; then kill -"$1" "$pid" 2>/dev/null || true; fi
  done
}
trap 'stop_all TERM' TERM
trap 'stop_all INT' INT

for ((i = 0; i < num; i++)); do
  envs=()
  while IFS= read -r w; do envs+=("$w"); done < <(process_env "$i")
  if ((i == 0)); then
    env "${envs[@]}" "$PYTHON" -m mmjax "$@" &
  else
    env "${envs[@]}" "$PYTHON" -m mmjax "$@" >"$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=("$!")
done
echo "local_multiprocess.sh: $num processes x $devices devices, coordinator 127.0.0.1:$port, logs of 1..$((num - 1)) in $log_dir" >&2

remaining=$num
while ((remaining > 0)); do
  wait -n || true # returns when some process ends (or a trapped signal arrives); statuses are read below
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    [[ -z $pid ]] && continue
    kill -0 "$pid" 2>/dev/null && continue # still running (or an unreaped zombie: the next wait -n reaps it)
    status=0
    wait "$pid" || status=$?
    pids[i]=""
    remaining=$((remaining - 1))
    if ((status != 0)); then
      echo "local_multiprocess.sh: process $i exited with status $status; stopping the others" >&2
      ((i > 0)) && tail -n 30 "$log_dir/process_$i.log" >&2
      stop_all TERM
      for ((t = 0; t < grace * 10; t++)); do
        alive=0
        for p in "${pids[@]}"; do [[ -n $p ]] && kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
      done
      stop_all KILL
      wait || true
      exit "$status"
    fi
  done
done
exit 0
