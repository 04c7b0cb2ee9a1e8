#!/bin/sh
# Installs the Debian packages the gateway's build, tests and demo need, only when missing.
# Usage: scripts/system-deps.sh [demo|test|install]   (as root on Debian 12 / Raspberry Pi OS Bookworm)
#   install: what a store's gateway runs with (scripts/install.sh): mosquitto (mosquitto_passwd) and its
#   clients for checks by hand, bluez for BLE, CA certificates for the cloud bridge and sync.
set -eu
want="python3 python3-venv python3-dev"
if [ "${1:-test}" = "install" ]; then
    want="python3 python3-venv mosquitto mosquitto-clients bluez ca-certificates"
fi
if [ "${1:-test}" = "test" ]; then
    # systemd: systemd-analyze verify and security of the unit (tests/ops); tzdata: the time zones the
    # tests run in (make pytest-anyday sets TZ; without the zone files libc silently stays on UTC);
    # chromium: the browser tests (tests/browser) drive Debian's headless Chromium through Playwright, which
    # downloads no browser of its own; fonts-dejavu-core: text to paint in the pages' screenshots
    want="$want mosquitto mosquitto-clients dbus libdbus-1-dev libglib2.0-dev pkg-config gcc systemd tzdata"
    want="$want chromium fonts-dejavu-core"
fi
missing=""
for pkg in $want; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != "0" ]; then
        echo "missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "installing Debian packages:$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
# The packaged mosquitto starts a system broker on 1883; the tests never use it, they start their own.
