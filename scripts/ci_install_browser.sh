#!/usr/bin/env bash
# Install the headless browser the web-demo test drives (tests/test_web_demo.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Debian's chromium is driven
# through the Python `playwright` package already in .venv (executable_path=/usr/bin/chromium), so
# we never run `playwright install` (which would download its own browser from the network).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: need root (or sudo) to apt-get install chromium" >&2; exit 2; }
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
/usr/bin/chromium --version
