"""``profile-store``: a real process, the admin token from a file or the environment, SIGTERM; and
``edge-gateway profile-store``, which only says where the command went."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edge.cli import main as edge_gateway
from profilestore.cli import CliError, main, parse_listen


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "profilestore", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"ready at (http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"exited with {process.wait()} before it was ready")


def admin_stats(base_url: str, token: str) -> dict[str, int]:
    request = urllib.request.Request(
        base_url + "/admin/v1/stats", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


@pytest.mark.parametrize(
    ("token_args", "env", "stop"),
    [
        (["--admin-token-file", "{tmp}/admin-token"], {}, signal.SIGTERM),
        (["--admin-token-env", "PS_ADMIN"], {"PS_ADMIN": "the-admin-token"}, signal.SIGINT),
    ],
    ids=["file-sigterm", "env-sigint"],
)
def test_it_serves_until_a_signal(
    tmp_path: Path, token_args: list[str], env: dict[str, str], stop: int
) -> None:
    (tmp_path / "admin-token").write_text("the-admin-token\n")
    args = ["--db", f"sqlite://{tmp_path / 'store.db'}", "--listen", "127.0.0.1:0", "--member-days", "7.5"]
    process = start(args + [arg.format(tmp=tmp_path) for arg in token_args], env)
    try:
        base_url = wait_ready(process)
        with urllib.request.urlopen(base_url + "/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        assert admin_stats(base_url, "the-admin-token")["stores"] == 0
        process.send_signal(stop)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "x.db", "--admin-token-env", "SURELY_UNSET_VARIABLE"], "unset or empty"),
        (["--db", "x.db", "--admin-token-file", "/nonexistent/token"], "cannot read"),
        (["--db", "mysql://db", "--admin-token-env", "HOME"], "unsupported database URL"),
        (["--db", "x.db", "--listen", "nowhere", "--admin-token-env", "HOME"], "HOST:PORT"),
        (
            ["--db", "/nonexistent/folder/x.db", "--listen", "127.0.0.1:0", "--admin-token-env", "HOME"],
            "does not exist",
        ),
        (["--db", "x.db", "--member-days", "0", "--admin-token-env", "HOME"], "--member-days 0"),
        (["--db", "x.db", "--member-days", "3651", "--admin-token-env", "HOME"], "at most 3650"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_the_admin_token_is_never_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--db", "x.db", "--admin-token", "secret"])
    assert exited.value.code == 2
    assert "--admin-token-env" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)), (":9000", ("127.0.0.1", 9000))],
)
def test_listen_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["8080", "host:", "host:99999", "host:http"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(CliError):
        parse_listen(text)


@pytest.mark.parametrize("args", [[], ["--db", "x.db", "--admin-token-env", "HOME"], ["--help"]])
def test_the_gateway_command_points_to_profile_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert edge_gateway(["profile-store", *args]) == 2
    assert "`profile-store`" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
