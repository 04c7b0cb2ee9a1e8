"""systemd/edge-gateway.service: `systemd-analyze verify` clean, the hardening in place, and
`systemd-analyze security --offline=true` at or under the threshold docs/operations.md records.

The unit runs /opt/edge-gateway/venv/bin/edge-gateway, which a development machine does not have, and
`verify` rightly refuses a unit whose command is missing. So it verifies a copy whose commands point at
this checkout's real `edge-gateway` (every other line untouched). tests/ops/test_install.py verifies
the unit the installer writes, whose commands point at the venv it made.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.clients import REPO
from tests.ops.unitfile import read_unit

UNIT = REPO / "systemd" / "edge-gateway.service"
OPERATIONS = REPO / "docs" / "operations.md"
INSTALLED_COMMAND = "/opt/edge-gateway/venv/bin/edge-gateway"


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (package systemd): the unit cannot be checked here")
    return tool


def local_command() -> Path:
    command = Path(sys.executable).with_name("edge-gateway")
    if not command.exists():
        found = shutil.which("edge-gateway")
        assert found is not None, "the project is not installed in this environment (pip install -e .)"
        command = Path(found)
    return command


def verify(tool: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    tool = systemd_analyze()
    text = UNIT.read_text()
    assert text.count(INSTALLED_COMMAND) == 2  # ExecStartPre and ExecStart
    copy = tmp_path / UNIT.name  # verify reads the unit's name from the file name
    copy.write_text(text.replace(INSTALLED_COMMAND, str(local_command())))
    result = verify(tool, copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_refuses_a_unit_whose_command_is_missing(tmp_path: Path) -> None:
    """The check above can fail: the same copy with a command that does not exist is refused."""
    tool = systemd_analyze()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_COMMAND, str(tmp_path / "missing" / "edge-gateway")))
    result = verify(tool, copy)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_the_hardening_is_in_place() -> None:
    unit = read_unit(UNIT)
    service = unit["Service"]

    def one(key: str) -> str:
        values = service.get(key)
        assert values is not None and len(values) == 1, f"{key}= should be set once, is {values}"
        return values[0]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert int(one("WatchdogSec")) > 0
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("DynamicUser") == "yes"
    assert one("StateDirectory") == "edge-gateway"
    assert one("ProtectSystem") == "strict"
    assert one("NoNewPrivileges") == "yes"
    # no capabilities at all, none ambient
    assert one("CapabilityBoundingSet") == ""
    assert one("AmbientCapabilities") == ""
    # devices: V4L2 only, through the device cgroup (PrivateDevices= would hide /dev/video*)
    assert one("PrivateDevices") == "no"
    assert one("DevicePolicy") == "closed"
    assert service["DeviceAllow"] == ["char-video4linux rw"]
    assert set(one("SupplementaryGroups").split()) == {"bluetooth", "video"}
    # sockets: D-Bus (BLE), TCP to the broker and the cloud, the metrics endpoint; nothing else
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "PrivateMounts",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RemoveIPC",
    ):
        assert one(key) == "yes", key
    assert one("ProtectProc") == "invisible"
    assert one("UMask") == "0077"
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert one("LoadCredential").startswith("mqtt-password:/etc/edge-gateway/")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def documented() -> tuple[float, str]:
    """The threshold and the recorded score line from docs/operations.md."""
    text = OPERATIONS.read_text()
    threshold = re.search(r"exposure threshold: \*\*(\d+\.\d+)\*\*", text)
    recorded = re.search(r"^→ Overall exposure level for edge-gateway\.service: .*$", text, re.MULTILINE)
    assert threshold is not None, "docs/operations.md must state the exposure threshold: **N.N**"
    assert recorded is not None, "docs/operations.md must record the score line of systemd-analyze security"
    return float(threshold.group(1)), recorded.group(0)


def test_security_exposure_is_at_most_the_documented_threshold() -> None:
    tool = systemd_analyze()
    threshold, recorded = documented()
    result = subprocess.run(
        [tool, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = re.search(r"^→ Overall exposure level for edge-gateway\.service: .*$", result.stdout, re.MULTILINE)
    assert line is not None, result.stdout[-2000:]
    score = re.search(r": (\d+\.\d+) (\S+)", line.group(0))
    assert score is not None, line.group(0)
    assert float(score.group(1)) <= threshold, line.group(0)
    assert score.group(2) in {"OK", "SAFE", "PERFECT"}, line.group(0)
    # What docs/operations.md records is what this systemd says of this unit today.
    assert line.group(0) == recorded
    # systemd-analyze's own gate agrees (its --threshold counts in tenths).
    gate = subprocess.run(
        [tool, "security", "--offline=true", f"--threshold={round(threshold * 10)}", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gate.returncode == 0, gate.stdout[-500:]
