#!/usr/bin/env bash
# Installs the Debian packages voltstack needs when they are missing.
#   scripts/system-deps.sh build   compiler and Python headers/venv (make, make demo)
#   scripts/system-deps.sh test    + the real servers and peers the tests use
# As root with apt-get it installs what is missing; otherwise it names the
# packages in one line and fails, so nobody runs a test suite that cannot pass.
set -euo pipefail

python=${PYTHON:-python3}
missing=()

need_command() {  # need_command PACKAGE COMMAND_PATH...
    local package=$1; shift
    for path in "$@"; do
        # Globs (postgresql's versioned folder) expand here.
        for candidate in $path; do
            [ -x "$candidate" ] && return 0
        done
    done
    missing+=("$package")
}

check_build() {
    command -v gcc >/dev/null || missing+=(gcc)
    command -v make >/dev/null || missing+=(make)
    "$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    "$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || missing+=(python3-dev)
}

check_test() {
    need_command mosquitto /usr/sbin/mosquitto
    need_command influxdb /usr/bin/influxd
    need_command postgresql '/usr/lib/postgresql/*/bin/pg_ctl'
    need_command socat /usr/bin/socat
    need_command mbpoll /usr/bin/mbpoll
    need_command ser2net /usr/sbin/ser2net  # an RFC 2217 server for rfc2217:// URLs
    need_command openssl /usr/bin/openssl  # test certificates for TLS
    need_command procps /usr/bin/pgrep
    need_command chromium /usr/bin/chromium  # the console's browser tests (Playwright)
}

for group in "$@"; do
    case $group in
        build) check_build ;;
        test) check_build; check_test ;;
        *) echo "usage: $0 build|test" >&2; exit 2 ;;
    esac
done

[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "voltstack needs these Debian packages: ${missing[*]} — install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps a test machine lean; policy-rc.d stops the
# packages' own services from starting: tests run their own servers.
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=true
fi
status=0
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
$created_policy && rm -f "$policy"
exit $status
