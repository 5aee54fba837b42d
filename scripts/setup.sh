#!/usr/bin/env bash
# Set up manyfest in ./.venv on Debian 12 (as root): system packages when missing, then the
# package with its test and dev tools. Never installs into the system Python (PEP 668).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)  # the auth tests' bcrypt htpasswd
for pkg in ${MANYFEST_EXTRA_APT:-}; do need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian package enables a registry service on :5000; manyfest starts its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: manyfest installed in .venv ($(.venv/bin/manyfest --version))" >&2
