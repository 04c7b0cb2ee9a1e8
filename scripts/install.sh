#!/bin/sh
# Installs the gateway on a Raspberry Pi OS Bookworm / Debian 12 machine, from the source tree this
# script is in: Debian packages, a venv with the project under /opt/edge-gateway, the systemd unit, an
# example configuration and the store broker's configuration. Safe to run again (an upgrade): files an
# operator may have edited (everything under /etc except the unit) are never overwritten; a changed
# shipped version is put next to them as <file>.dist instead. See docs/operations.md.
#
# Usage: scripts/install.sh [--root DIR] [--no-packages] [--no-systemd] [--python PATH]
#   --root DIR     install into DIR as if it were / (DIR/opt/edge-gateway, DIR/etc, ...); the paths
#                  written into the unit and the configuration point into DIR too, so the tree works in
#                  place (tests, inspection). Implies --no-systemd.
#   --no-packages  do not apt-get install anything (the packages must be there already)
#   --no-systemd   do not run systemctl (daemon-reload, enable); the unit file is still installed
#   --python PATH  the interpreter the venv is made from (default: python3)
# Environment: PREFIX (default /opt/edge-gateway), SYSCONFDIR (default /etc), PYTHON; --root sets both.
# Needs root unless --root points at a directory the caller may write.
set -eu
# Whatever the caller's umask: the service's dynamic user must be able to read the venv and the model.
umask 022

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
PACKAGES=yes
SYSTEMD=yes
PYTHON=${PYTHON:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --no-packages) PACKAGES=no; shift ;;
        --no-systemd) SYSTEMD=no; shift ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    PREFIX=$ROOT/opt/edge-gateway
    SYSCONFDIR=$ROOT/etc
    SYSTEMD=no
else
    PREFIX=${PREFIX:-/opt/edge-gateway}
    SYSCONFDIR=${SYSCONFDIR:-/etc}
fi
ETC=$SYSCONFDIR/edge-gateway
MOSQ=$SYSCONFDIR/mosquitto
UNITDIR=$SYSCONFDIR/systemd/system
VENV=$PREFIX/venv

say() { echo "install.sh: $*"; }
warn() { echo "install.sh: warning: $*" >&2; }

if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/edge" ] || [ ! -d "$SRC/contract" ]; then
    echo "install.sh: $SRC is not the gateway's source tree" >&2
    exit 1
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != "0" ] && [ "$PREFIX" = /opt/edge-gateway ] && [ "$SYSCONFDIR" = /etc ]; then
    echo "install.sh: run as root (sudo), or install into a directory with --root DIR" >&2
    exit 1
fi

# ----- Debian packages (only the missing ones) -----
if [ "$PACKAGES" = yes ]; then
    "$SRC/scripts/system-deps.sh" install
fi

# Copies $1 to $2 with mode $3 unless $2 exists: an operator's file is never replaced. When the shipped
# version differs from theirs, it lands next to it as $2.dist for them to compare.
install_config() {
    if [ -e "$2" ]; then
        if cmp -s "$1" "$2"; then
            return 0
        fi
        install -m "$3" "$1" "$2.dist"
        say "kept $2 (yours); the shipped version is $2.dist"
        return 0
    fi
    install -D -m "$3" "$1" "$2"
    say "installed $2"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# ----- the venv and the project -----
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the venv $VENV"
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$VENV"
fi
# Built from a copy, so the source tree gets no build/ or egg-info from this. The gateway and the contract
# it shares with the cloud, in one pip command (the contract is on no index); never the reference cloud
# (cloud/) or the demo extra: a store's venv has no asyncpg and no amqtt.
mkdir -p "$WORK/src"
cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/edge" "$SRC/contract" "$WORK/src/"
find "$WORK/src" -name __pycache__ -type d -prune -exec rm -rf {} +
say "installing the gateway into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$WORK/src/contract" "$WORK/src"
"$VENV/bin/edge-gateway" --version >/dev/null

# Shipped, read-only data and documentation (replaced on every install: not for editing).
install -d -m 0755 "$PREFIX/models" "$PREFIX/docs" "$PREFIX/share/examples"
install -m 0644 "$SRC"/models/*.onnx "$SRC"/models/*.json "$PREFIX/models/"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
install -m 0644 "$SRC"/docs/*.md "$PREFIX/docs/"
install -m 0644 "$SRC"/config/*.example.* "$PREFIX/share/examples/"
install -m 0644 "$SRC"/config/mosquitto/* "$PREFIX/share/examples/"

# Rewrites the standard locations (stdin to stdout) to this installation's.
relocate() {
    sed -e "s#/opt/edge-gateway#$PREFIX#g" -e "s#/etc/edge-gateway#$ETC#g" -e "s#/etc/mosquitto#$MOSQ#g"
}

# ----- /etc/edge-gateway: the example configuration, if there is none -----
install -d -m 0755 "$ETC" "$ETC/keys"
# The installed example: shipped model under $PREFIX, the broker user made below, its password handed
# over by systemd (LoadCredential in the unit), and the state (ledger, snapshots, models) in the unit's
# StateDirectory: the example's own default, state/ next to the file, is for running by hand and would
# be /etc/edge-gateway/state here, read-only under ProtectSystem=strict.
sed -e 's#"\.\./models/#"/opt/edge-gateway/models/#' \
    -e 's|^# username = "gateway"|username = "gateway"|' \
    -e 's|^# password_file = "/run/credentials/|password_file = "/run/credentials/|' \
    -e 's|^# path = "state/ledger.sqlite" .*|path = "/var/lib/edge-gateway/ledger.sqlite"|' \
    -e 's|^# state_dir = "state" .*|state_dir = "/var/lib/edge-gateway"    # applied configurations and models|' \
    "$SRC/config/gateway.example.toml" | relocate >"$WORK/gateway.toml"
install_config "$WORK/gateway.toml" "$ETC/gateway.toml" 0644
install_config "$SRC/config/offers.example.toml" "$ETC/offers.example.toml" 0644
install_config "$SRC/config/shoppers.example.json" "$ETC/shoppers.example.json" 0644
install_config "$SRC/config/keys/README" "$ETC/keys/README" 0644

# ----- the store broker -----
install -d -m 0755 "$MOSQ" "$MOSQ/conf.d"
relocate <"$SRC/config/mosquitto/mosquitto.conf" >"$WORK/mosquitto.conf"
install_config "$WORK/mosquitto.conf" "$MOSQ/conf.d/edge-gateway.conf" 0644
install_config "$SRC/config/mosquitto/edge-gateway.acl" "$MOSQ/edge-gateway.acl" 0644
# The browser pages (player/, kiosks, staff tablets) speak MQTT over WebSockets on port 9001 (an older,
# kept drop-in may lack that listener: the shipped one is then beside it as .dist).
if ! grep -q "^protocol websockets" "$MOSQ/conf.d/edge-gateway.conf"; then
    warn "$MOSQ/conf.d/edge-gateway.conf has no websockets listener: the browser pages need one (docs/player.md; see the shipped edge-gateway.conf.dist)"
fi
relocate <"$SRC/config/mosquitto/bridge.conf.example" >"$WORK/bridge.conf.example"
install -m 0644 "$WORK/bridge.conf.example" "$MOSQ/edge-gateway-bridge.conf.example"
if [ -f "$MOSQ/mosquitto.conf" ] && ! grep -q "^include_dir /etc/mosquitto/conf.d" "$MOSQ/mosquitto.conf"; then
    warn "$MOSQ/mosquitto.conf does not include conf.d/ (Debian's does): add 'include_dir /etc/mosquitto/conf.d'"
fi

# The broker's password file (read by mosquitto after it dropped to its own user).
PASSWD=$MOSQ/edge-gateway.passwd
if [ ! -e "$PASSWD" ]; then
    (umask 027 && : >"$PASSWD")
    say "created $PASSWD (empty: add users with mosquitto_passwd, docs/operations.md)"
fi
if [ "$(id -u)" = "0" ] && getent group mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$PASSWD"
    chmod 0640 "$PASSWD"
fi

# The gateway's own broker user: a random password, made here, known to the broker (hashed) and to
# systemd (the credential source, root-only). Never replaced once there.
CREDENTIAL=$ETC/mqtt-password
if grep -q "^gateway:" "$PASSWD"; then
    [ -e "$CREDENTIAL" ] || warn "broker user 'gateway' exists but $CREDENTIAL does not: write its password there (0600)"
elif command -v mosquitto_passwd >/dev/null 2>&1; then
    if [ ! -e "$CREDENTIAL" ]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$CREDENTIAL")
        say "created $CREDENTIAL (the gateway's broker password)"
    fi
    password=$(cat "$CREDENTIAL")
    # The password goes through stdin, never the command line.
    printf '%s\n%s\n' "$password" "$password" | mosquitto_passwd "$PASSWD" gateway >/dev/null
    unset password
    say "added the broker user 'gateway' to $PASSWD"
else
    warn "mosquitto_passwd not found: add the broker user 'gateway' by hand (docs/operations.md)"
fi

# ----- the systemd unit (ours: replaced on upgrade; local changes go in drop-ins) -----
install -d -m 0755 "$UNITDIR"
relocate <"$SRC/systemd/edge-gateway.service" >"$WORK/edge-gateway.service"
install -m 0644 "$WORK/edge-gateway.service" "$UNITDIR/edge-gateway.service"
say "installed $UNITDIR/edge-gateway.service"

if [ "$SYSTEMD" = yes ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable edge-gateway.service
    # The broker's new configuration (its users must be in place first: docs/operations.md).
    systemctl enable mosquitto.service
    systemctl restart mosquitto.service || warn "mosquitto did not restart: journalctl -u mosquitto"
    say "enabled edge-gateway.service; start it once the configuration is done: systemctl start edge-gateway"
elif [ "$SYSTEMD" = yes ]; then
    say "systemd is not running here (not PID 1): the unit is installed but not enabled"
fi

say "next: put the cloud's token public key in $ETC/keys/token-public.pem, edit $ETC/gateway.toml, then"
say "      $VENV/bin/edge-gateway check-config $ETC/gateway.toml"
