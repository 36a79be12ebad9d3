# Shared by the Cloud TPU scripts (sourced, not run). Flags every script takes:
#   --name NAME        TPU VM name; with --slices K > 1, the queued resource whose nodes are NAME-0 .. NAME-(K-1)
#                      (env TPU_NAME)
#   --zone ZONE        e.g. us-central2-b (env TPU_ZONE)
#   --project PROJECT  default: gcloud's configured project (env TPU_PROJECT)
#   --slices K         number of slices (multi-slice queued resources; default 1)
#   --dry-run          print the gcloud commands instead of running them
# Values may also be given as --flag=value.
# shellcheck shell=bash
# shellcheck disable=SC2034  # NAME, SHIFT, ... are read by the scripts that source this file

NAME=${TPU_NAME:-}
ZONE=${TPU_ZONE:-}
PROJECT=${TPU_PROJECT:-}
SLICES=1
DRY_RUN=0
SHIFT=0

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# common_flag FLAG [VALUE]: consume a flag every script shares; sets SHIFT to the words used, fails if FLAG
# is not one of them.
common_flag() {
  case $1 in
    --name | --zone | --project | --slices)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --name) NAME=$2 ;;
        --zone) ZONE=$2 ;;
        --project) PROJECT=$2 ;;
        --slices) SLICES=$2 ;;
      esac
      SHIFT=2
      ;;
    --dry-run) DRY_RUN=1 SHIFT=1 ;;
    *) return 1 ;;
  esac
}

# split_equals ARGS...: prints the arguments one per line (NUL-separated), with --flag=value turned into
# --flag value up to a lone "--", after which everything passes unchanged.
split_equals() {
  local a rest=0
  for a in "$@"; do
    if ((rest)) || [[ $a != --*=* ]]; then
      [[ $a == -- ]] && rest=1
      printf '%s\0' "$a"
    else
      printf '%s\0%s\0' "${a%%=*}" "${a#*=}"
    fi
  done
}

require_common() {
  [[ -n $NAME ]] || die "--name is required (or set TPU_NAME)"
  [[ -n $ZONE ]] || die "--zone is required (or set TPU_ZONE)"
  [[ $SLICES =~ ^[1-9][0-9]*$ ]] || die "--slices must be a positive integer, got '$SLICES'"
}

# nodes: the TPU VM names, one per slice.
nodes() {
  local i
  if ((SLICES == 1)); then
    echo "$NAME"
  else
    for ((i = 0; i < SLICES; i++)); do echo "$NAME-$i"; done
  fi
}

# gcloud flags for the zone and project.
location_flags() {
  printf '%s\n' "--zone=$ZONE"
  [[ -z $PROJECT ]] || printf '%s\n' "--project=$PROJECT"
}

# quote WORD: WORD as a shell would read it back (bare when safe, else single-quoted).
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$1"
  elif [[ $1 =~ ^(--[A-Za-z0-9.-]+=)(.*)$ ]]; then # --flag='value': same words, easier to read
    printf '%s' "${BASH_REMATCH[1]}"
    quote "${BASH_REMATCH[2]}"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# join_quoted WORDS...: one line a shell splits back into exactly WORDS.
join_quoted() {
  local out="" w
  for w in "$@"; do out+="$(quote "$w") "; done
  printf '%s' "${out% }"
}

# run COMMAND...: print it (quoted, copy-pastable); unless --dry-run, also run it.
run() {
  if ((DRY_RUN)); then
    join_quoted "$@"
    echo
  else
    echo "+ $(join_quoted "$@")" >&2
    "$@"
  fi
}

# ssh_all NODE COMMAND: run the shell COMMAND on every worker of NODE.
ssh_all() {
  local flags
  mapfile -t flags < <(location_flags)
  run gcloud compute tpus tpu-vm ssh "$1" "${flags[@]}" --worker=all --command="$2"
}
