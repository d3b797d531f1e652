#!/usr/bin/env bash
# The two system packages the test suite needs, which pip cannot install:
#   bubblewrap  - isolates the agents' bash commands (the isolation tests attempt real escapes)
#   postgresql  - server binaries (initdb, pg_ctl): the store tests start a throwaway cluster
# Installed with apt-get when this runs as root on Debian/Ubuntu; otherwise it stops at once and
# prints the exact command to run, instead of letting tests fail (or skip) one by one.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)

[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]} (apt-get) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "error: the test suite needs these system packages: ${missing[*]}" >&2
if command -v apt-get >/dev/null 2>&1; then
  echo "run:   sudo sh -c '$cmd'" >&2
else
  echo "install them with your system's package manager (Debian/Ubuntu: $cmd)" >&2
fi
echo "then run make test again." >&2
exit 1
