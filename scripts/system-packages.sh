#!/usr/bin/env bash
# The Debian packages the test suite needs: Chromium (browser tests), g++ (torch.compile's CPU
# code in the compiled-segmentation test) and PostgreSQL's programs (the PostgreSQL pass; no
# service is started). Installs the missing ones when run as root with apt-get; otherwise
# names the one command to run and fails. Used by `make test` and by `.ci/run`.
set -euo pipefail

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
[ -n "$(pg_bin)" ] || missing+=(postgresql)
[ "${#missing[@]}" -eq 0 ] && exit 0

command_line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "The tests need these Debian packages: ${missing[*]}. Install them first, e.g.:" >&2
    echo "    sudo apt-get update && sudo $command_line" >&2
    exit 1
fi
echo "Installing the test suite's Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
