#!/usr/bin/env bash
# Install mmjax (and jax[tpu]) into ~/mmjax/.venv on every worker of every slice.
#
#   tpu_scripts/setup.sh --name NAME --zone ZONE [--repo-url URL [--ref REF]] [--slices K] [--project P] [--dry-run]
#
# Source: by default the files git tracks in this checkout (committed or not), copied to every worker; with
# --repo-url, a clone of URL at REF (default main) on every worker. Rerunning updates the code in place and
# reuses the virtual environment. Versions follow constraints.txt, as `make test` installs them.
# Common flags (--name --zone --project --slices --dry-run): see _common.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

repo_url="" ref=main
mapfile -d '' -t args < <(split_equals "$@")
set -- "${args[@]}"
while (($#)); do
  if common_flag "$@"; then
    shift "$SHIFT"
    continue
  fi
  case $1 in
    --repo-url) repo_url=${2:?--repo-url needs a value}; shift 2 ;;
    --ref) ref=${2:?--ref needs a value}; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
require_common

install='cd mmjax && { test -x .venv/bin/python || python3 -m venv .venv; }'
install+=" && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -c constraints.txt -e '.[tpu]'"
install+=' && .venv/bin/python -c "import jax, mmjax; print(mmjax.__name__, jax.__version__)"'

mapfile -t location < <(location_flags)
if [[ -n $repo_url ]]; then
  fetch="{ test -d mmjax/.git || git clone --quiet $(quote "$repo_url") mmjax; }"
  fetch+=" && git -C mmjax fetch --quiet origin $(quote "$ref") && git -C mmjax checkout --quiet --detach FETCH_HEAD"
else
  repo_root=$(cd "$here/.." && pwd)
  tarball=${TMPDIR:-/tmp}/mmjax-src.tar.gz
  if ((DRY_RUN)); then
    echo "# pack the files git tracks in $repo_root into $tarball"
  else
    git -C "$repo_root" ls-files -z | tar -C "$repo_root" --null -T - -czf "$tarball"
  fi
  fetch="mkdir -p mmjax && tar -xzf mmjax-src.tar.gz -C mmjax"
fi
while read -r node; do
  if [[ -z $repo_url ]]; then
    run gcloud compute tpus tpu-vm scp "$tarball" "$node:mmjax-src.tar.gz" "${location[@]}" --worker=all
  fi
  ssh_all "$node" "$fetch && $install"
done < <(nodes)
