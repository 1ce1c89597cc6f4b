#!/usr/bin/env bash
# Set up the Python 3.12 environment that the OpenHands integration tests run in.
#
# Creates .venv312 (or $SECRETD_OPENHANDS_VENV) with a Python 3.12 interpreter,
# installs openhands-sdk and openhands-tools from PyPI with the test tools,
# installs this repository into it as an editable package, and installs tmux
# with apt-get when it is missing.  Safe to run again: every step skips or
# re-checks what is already there.  Prints the venv's python path last.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SECRETD_OPENHANDS_VENV:-$root/.venv312}

find_python312() {
    local candidate
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.12.*/bin/python; do
            if [ -x "$candidate" ]; then
                echo "$candidate"
                return 0
            fi
        done
    fi
    if command -v python3.12 >/dev/null 2>&1; then
        command -v python3.12
        return 0
    fi
    return 1
}

if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "openhands-env: tmux is missing; install it (apt-get install tmux) and run again" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    if ! python312=$(find_python312); then
        echo "openhands-env: no Python 3.12 found; install it with 'pyenv install 3.12' or your package manager" >&2
        exit 1
    fi
    "$python312" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "openhands-sdk>=1.58" "openhands-tools>=1.58"
"${pip[@]}" install -e "$root[openhands,test]"

echo "$venv/bin/python"
