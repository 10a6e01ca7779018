#!/usr/bin/env bash
# Install Debian's headless Chromium for the report-rendering test (tests/test_report_render.py).
# Needs root (or passwordless sudo); without it the test is skipped unless CAI_REQUIRE_CHROMIUM=1.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup-chromium: not root and no sudo; the HTML render test will be skipped" >&2; exit 0; fi
fi
echo "setup-chromium: installing Debian's chromium (for the HTML report render test)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; } \
  || echo "setup-chromium: could not install chromium; the HTML render test will be skipped" >&2
exit 0
