"""A real mosquitto on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support.wait import until_blocking


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One broker process; ``restart`` keeps its ports and its persisted sessions.

    Two listeners on loopback: MQTT over TCP on ``port`` and MQTT over WebSockets on ``ws_port`` (what the
    browser pages connect to: ``ws://127.0.0.1:{ws_port}``), with the same users and ACL
    (``per_listener_settings false``, as the shipped config).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        extra_conf: str = "",
        persistence: bool = True,
        allow_anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        run_as: str | None = None,
    ) -> None:
        """``password_file``/``acl_file`` turn on mosquitto's own authentication and ACL checks.

        ``run_as``: the ``user`` mosquitto keeps after start; started as root it would otherwise become
        the 'mosquitto' user, which cannot read files under pytest's private ``tmp_path``.
        """
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            msg = "mosquitto is not installed (make test installs it)"
            raise RuntimeError(msg)
        self.binary = binary
        self.port = free_port()
        self.ws_port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "set_tcp_nodelay true\n"
            + (f"user {run_as}\n" if run_as is not None else "")
            + (f"password_file {password_file}\n" if password_file is not None else "")
            + (f"acl_file {acl_file}\n" if acl_file is not None else "")
            + (
                f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
                if persistence
                else ""
            )
            + "max_queued_messages 10000\n"
            f"log_dest file {workdir}/mosquitto.log\n" + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proc = self.proc

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                if proc.poll() is not None:
                    msg = f"mosquitto exited with {proc.returncode}: {self.log()}"
                    raise RuntimeError(msg) from None
                return False

        until_blocking(listening, 10, what=f"mosquitto to listen on {self.port}", detail=self.log)
        if f"listener {self.ws_port} " not in self.conf.read_text():
            return  # a subclass wrote a configuration of its own (tests/ops)
        until_blocking(
            lambda: self._accepts(self.ws_port),
            10,
            what=f"mosquitto's websockets listener on {self.ws_port}",
            detail=self.log,
        )

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
