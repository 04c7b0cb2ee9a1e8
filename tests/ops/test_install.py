"""scripts/install.sh into a temporary root: a real venv with the project pip-installed into it, the
unit, the example configuration and the broker files; a second run keeps what an operator edited.

`--root` makes the installation self-contained (the unit and the configuration point into the root),
so the installed gateway, unit and broker files are exercised as they are, not just looked at.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.clients import REPO, Client
from tests.support.broker import Mosquitto

INSTALL = REPO / "scripts" / "install.sh"
CREDENTIAL_IN_SERVICE = "/run/credentials/edge-gateway.service/mqtt-password"


@dataclass(frozen=True)
class Installed:
    root: Path
    output: str

    @property
    def prefix(self) -> Path:
        return self.root / "opt" / "edge-gateway"

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "edge-gateway"

    @property
    def mosquitto(self) -> Path:
        return self.root / "etc" / "mosquitto"

    @property
    def unit(self) -> Path:
        return self.root / "etc" / "systemd" / "system" / "edge-gateway.service"

    @property
    def command(self) -> Path:
        return self.prefix / "venv" / "bin" / "edge-gateway"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )


def base_python() -> str:
    """Debian's python3, as on a Pi (python3-venv: scripts/system-deps.sh); else this interpreter."""
    debian = Path("/usr/bin/python3")
    if debian.exists() and subprocess.run([debian, "-c", "import ensurepip"], check=False).returncode == 0:
        return str(debian)
    return sys.executable


def run_install(root: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    return subprocess.run(
        ["sh", str(INSTALL), "--root", str(root), "--no-packages", "--no-systemd", "--python", base_python()],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=environment,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("root")
    result = run_install(root)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    return Installed(root, result.stdout)


def test_the_installed_gateway_runs(installed: Installed) -> None:
    assert installed.command.is_file()
    for args in (["--help"], ["--version"], ["run", "--help"]):
        result = installed.run(*args)
        assert result.returncode == 0, result.stderr
    # Really installed into the venv, not borrowed from this checkout.
    located = subprocess.run(
        [str(installed.prefix / "venv" / "bin" / "python"), "-I", "-c", "import edge; print(edge.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(installed.prefix / "venv")
    # The contract came along; the cloud, its database driver and the demo's broker did not.
    absent = subprocess.run(
        [
            str(installed.prefix / "venv" / "bin" / "python"),
            "-I",
            "-c",
            "import importlib.util as u; print(*(m for m in ('storecontract', 'profilestore', 'asyncpg', "
            "'amqtt') if u.find_spec(m) is None))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert absent.stdout.split() == ["profilestore", "asyncpg", "amqtt"]


def test_the_installed_example_passes_check_config(installed: Installed, tmp_path: Path) -> None:
    keys = tmp_path / "cloud"
    made = installed.run("token", "keygen", "--out", str(keys))
    assert made.returncode == 0, made.stderr
    shutil.copy(keys / "token-public.pem", installed.etc / "keys" / "token-public.pem")
    try:
        example = installed.etc / "gateway.toml"
        text = example.read_text()
        assert 'username = "gateway"' in text.splitlines()
        assert f'password_file = "{CREDENTIAL_IN_SERVICE}"' in text.splitlines()
        # the state in the unit's StateDirectory, not next to the read-only /etc file
        assert 'path = "/var/lib/edge-gateway/ledger.sqlite"' in text.splitlines()
        assert any(line.startswith('state_dir = "/var/lib/edge-gateway"') for line in text.splitlines())
        # As installed, the only thing missing outside the service is the credential systemd hands it.
        result = installed.run("check-config", str(example))
        assert result.returncode == 1
        problems = [line.strip() for line in result.stderr.splitlines()[1:] if line.strip()]
        assert problems == [f"mqtt.password_file: file not found: {CREDENTIAL_IN_SERVICE}"], result.stderr
        # With the credential's source file in its place, the example is complete: model, offers, seed.
        as_service_sees_it = installed.etc / "check.toml"
        as_service_sees_it.write_text(
            text.replace(CREDENTIAL_IN_SERVICE, str(installed.etc / "mqtt-password"))
        )
        result = installed.run("check-config", str(as_service_sees_it))
        assert result.returncode == 0, result.stdout + result.stderr
        as_service_sees_it.unlink()
    finally:
        (installed.etc / "keys" / "token-public.pem").unlink()


def test_the_unit_and_broker_files_are_in_place(installed: Installed) -> None:
    unit = installed.unit.read_text()
    assert f"ExecStart={installed.command} run --config {installed.etc}/gateway.toml" in unit
    assert f"LoadCredential=mqtt-password:{installed.etc}/mqtt-password" in unit
    shipped = REPO / "config" / "mosquitto"
    assert (installed.mosquitto / "edge-gateway.acl").read_text() == (
        shipped / "edge-gateway.acl"
    ).read_text()
    dropin = (installed.mosquitto / "conf.d" / "edge-gateway.conf").read_text()
    assert f"password_file {installed.mosquitto}/edge-gateway.passwd" in dropin.splitlines()
    assert f"acl_file {installed.mosquitto}/edge-gateway.acl" in dropin.splitlines()
    assert (installed.mosquitto / "edge-gateway-bridge.conf.example").is_file()
    assert not (installed.mosquitto / "conf.d" / "edge-gateway-bridge.conf").exists()  # an example only
    for name in ("offers.onnx", "offers.json"):
        assert (installed.prefix / "models" / name).read_bytes() == (REPO / "models" / name).read_bytes()
    assert (installed.prefix / "docs" / "operations.md").is_file()
    # The gateway's broker password: made at install time, for root only, and known to the broker.
    credential = installed.etc / "mqtt-password"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert len(credential.read_text().strip()) >= 24
    users = [
        line.split(":", 1)[0]
        for line in (installed.mosquitto / "edge-gateway.passwd").read_text().splitlines()
    ]
    assert users == ["gateway"]


def test_the_installed_unit_verifies(installed: Installed) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (package systemd): the unit cannot be checked here")
    result = subprocess.run(
        [tool, "verify", str(installed.unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


async def test_the_installed_broker_files_let_the_gateway_in(installed: Installed, tmp_path: Path) -> None:
    broker = Mosquitto(
        tmp_path / "broker",
        persistence=False,
        allow_anonymous=False,
        password_file=installed.mosquitto / "edge-gateway.passwd",
        acl_file=installed.mosquitto / "edge-gateway.acl",
        run_as="root",
    )
    broker.start()
    try:
        password = (installed.etc / "mqtt-password").read_text().strip()
        async with Client(broker.port, "gateway", password, "store/+/gateway/status") as gateway:
            await gateway.publish("store/store-001/gateway/status", "online")
            await gateway.wait_for_message("store/store-001/gateway/status", "online")
    finally:
        broker.stop()


def test_a_second_run_keeps_what_the_operator_edited(installed: Installed) -> None:
    edited = {
        installed.etc / "gateway.toml": "# the operator's own configuration\n",
        installed.mosquitto / "edge-gateway.acl": "# the operator's own rules\n",
        installed.mosquitto / "conf.d" / "edge-gateway.conf": "# the operator's own broker settings\n",
    }
    for path, addition in edited.items():
        path.write_text(path.read_text() + addition)
    before = {path: path.read_bytes() for path in edited}
    credential = (installed.etc / "mqtt-password").read_bytes()
    passwd = (installed.mosquitto / "edge-gateway.passwd").read_bytes()

    result = run_install(installed.root)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    for path in edited:
        assert path.read_bytes() == before[path], f"{path} was overwritten"
        assert path.with_name(path.name + ".dist").is_file(), f"no {path.name}.dist next to it"
        assert f"kept {path}" in result.stdout
    assert (installed.etc / "mqtt-password").read_bytes() == credential
    assert (installed.mosquitto / "edge-gateway.passwd").read_bytes() == passwd
    assert installed.run("--version").returncode == 0
