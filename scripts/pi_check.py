"""make pi-check: the gateway on a Raspberry Pi's CPU, emulated: Debian 12 arm64 under QEMU (issue 19).

A Debian bookworm arm64 root (Python 3.11, as Raspberry Pi OS Bookworm) is built with debootstrap from the
Debian mirror apt uses on this machine and cached under ``.pi-root/`` (git-ignored; rebuilt when missing).
The project (./contract, .[demo], ./cloud) is installed in a venv inside it from PyPI. Then, for each
``QEMU_CPU`` (cortex-a72: Pi 4; cortex-a53: Pi 3 and Zero 2 W; cortex-a76: Pi 5), where QEMU refuses every
instruction that CPU does not have (but for the crypto extensions: QEMU's A72 and A53 have them, the Pi 4's
and Pi 3's do not; docs/operations.md):

- ``cpu``: the emulated CPU really is that one (AT_HWCAP: LSE atomics and the dot product only on the A76,
  SVE on none, where QEMU's default CPU has all three);
- ``imports``: every runtime dependency, then every module of ``edge/`` (scripts/pi_imports.py);
- ``check-config``: ``edge-gateway check-config`` on config/gateway.example.toml, with a token key made by
  ``edge-gateway token keygen`` in the root (cryptography's arm64 build);
- ``demo``: ``edge-gateway demo --duration 10`` to its summary, with acked exposures > 0;
- ``probe``: scripts/pi_probe.py (decisions, BLE frames and EIDs, the QR reader on a generated frame),
  compared with the same run on this machine: bit-identical, model scores within the probe's tolerance.

Exits 1 naming the step, the module when there is one and the CPU on the first failure, "Illegal
instruction" (SIGILL, exit 132) called by its name. ``--onnxruntime VERSION`` checks a venv whose
onnxruntime is that version instead (how the check's own test shows it catches onnxruntime 1.21.0 on the
Cortex-A72: tests/ops/test_pi_check.py). Needs root (debootstrap, chroot, mount) and apt.
"""

# ruff: noqa: S603, S607 - fixed commands, run as root by design

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
CACHE: Final = REPO / ".pi-root"
SUITE: Final = "bookworm"
ROOT_PACKAGES: Final = ("python3", "python3-venv", "python3-pip", "ca-certificates")
HOST_PACKAGES: Final = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap",
                        "update-binfmts": "binfmt-support"}  # fmt: skip
BINFMT: Final = Path("/proc/sys/fs/binfmt_misc")
# Pi 4, Pi 3 / Zero 2 W, Pi 5. The A76 has every instruction of the other two; it is run for the code paths
# libraries choose only on ARMv8.2 (onnxruntime's dot-product kernels, LSE atomics), not for SIGILL.
CPUS: Final = ("cortex-a72", "cortex-a53", "cortex-a76")
INSTALL_CPU: Final = "cortex-a53"  # pip and the wheels' own build steps run on the least capable core
SRC: Final = "/opt/edge-src"  # the checkout's copy, inside the root
DISTS: Final = ("pyproject.toml", "contract/pyproject.toml", "cloud/pyproject.toml")
# AT_HWCAP bits that tell the CPU asked for from QEMU's default ("max", which has all three): LSE atomics
# (ARMv8.1) and the dot product (ARMv8.2) are the A76's and not the A72's or A53's; no core of a Pi has SVE.
HWCAP_ATOMICS: Final = 1 << 8
HWCAP_ASIMDDP: Final = 1 << 20
HWCAP_SVE: Final = 1 << 22
HWCAP_EXPECTED: Final[dict[str, tuple[int, int]]] = {  # cpu -> (bits it must have, bits it must not)
    "cortex-a72": (0, HWCAP_ATOMICS | HWCAP_ASIMDDP | HWCAP_SVE),
    "cortex-a53": (0, HWCAP_ATOMICS | HWCAP_ASIMDDP | HWCAP_SVE),
    "cortex-a76": (HWCAP_ATOMICS | HWCAP_ASIMDDP, HWCAP_SVE),
}
SIGILL_EXIT: Final = 128 + signal.SIGILL
DEMO_SECONDS: Final = 10
ACKED: Final = re.compile(r"acked exposures (\d+)")


class CheckFailedError(Exception):
    def __init__(self, step: str, cpu: str | None, detail: str) -> None:
        where = f"{step} [QEMU_CPU={cpu}]" if cpu else step
        super().__init__(f"pi-check FAILED: {where}: {detail}")


def log(message: str) -> None:
    print(f"pi-check: {message}", flush=True)


def host(cmd: Sequence[str], step: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise CheckFailedError(
            step, None, f"`{' '.join(cmd)}` exited {result.returncode}\n" + "\n".join(tail)
        )
    return result


# ----- the host: QEMU, binfmt_misc, debootstrap -----


def ensure_host_tools() -> None:
    missing = sorted({pkg for tool, pkg in HOST_PACKAGES.items() if shutil.which(tool) is None})
    if missing:
        log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, capture_output=True,
                          check=False).returncode != 0:  # fmt: skip
            host(["apt-get", "update", "-q"], "apt-get update", env=env)  # a fresh machine has no lists yet
            host(["apt-get", "install", "-y", "-q", *missing], "host tools", env=env)
    if not os.path.ismount(BINFMT):
        host(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "binfmt_misc")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        host(["update-binfmts", "--enable", "qemu-aarch64"], "binfmt qemu-aarch64")
    text = entry.read_text() if entry.exists() else ""
    if not text.startswith("enabled") or "flags: " not in text or "F" not in text.split("flags: ")[1][:5]:
        raise CheckFailedError("binfmt qemu-aarch64", None, f"not enabled with the F flag:\n{text}")


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources or one-line .list), for the main suite."""
    apt = Path("/etc/apt")
    for path in sorted([apt / "sources.list", *(apt / "sources.list.d").glob("*.sources")]):
        if not path.is_file():
            continue
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "main" in fields.get("Components", "").split():
                return str(fields["URIs"].split()[0])
            for line in stanza.splitlines():
                words = line.split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    raise CheckFailedError("mirror", None, f"no apt source for Debian {SUITE} main in /etc/apt")


def ensure_root(root: Path) -> None:
    """Debootstrap the arm64 root unless the cache has a complete one."""
    stamp = root / ".pi-check-root"
    wanted = f"{SUITE} arm64 minbase {','.join(ROOT_PACKAGES)}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        log(f"arm64 root: cached ({root})")
        return
    mirror = debian_mirror()
    log(f"arm64 root: debootstrap {SUITE} from {mirror} (a few minutes)")
    started = time.monotonic()
    building = root.with_name(root.name + ".building")
    for old in (building, root):
        remove_root(old)
    root.parent.mkdir(parents=True, exist_ok=True)
    host(
        ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
         SUITE, str(building), mirror],
        "debootstrap",
    )  # fmt: skip
    (building / stamp.name).write_text(wanted)
    building.rename(root)
    log(f"arm64 root: built in {time.monotonic() - started:.0f} s")


# ----- inside the root -----

MOUNTS: Final = ("proc", "dev", "dev/shm")
HOST_CA: Final = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
ROOT_CA: Final = "/etc/ssl/certs/pi-check-host-ca.crt"


def mount_options(path: Path) -> set[str]:
    """The options of the mount that holds ``path`` (the longest mount point above it)."""
    best, options = "", ""
    resolved = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1]
        above = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if above and len(point) >= len(best):
            best, options = point, fields[3]
    return set(options.split(","))


def default_root() -> Path:
    """``.pi-root/`` in the checkout; where the checkout's filesystem forbids executing or device files (a
    CI runner's mount may), a folder under /var/cache instead, said in the log."""
    root = CACHE / f"{SUITE}-arm64"
    CACHE.mkdir(exist_ok=True)
    refused = mount_options(CACHE) & {"noexec", "nodev"}
    if not refused:
        return root
    fallback = Path("/var/cache/edge-pi-check") / hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    log(f"{CACHE} is on a {','.join(sorted(refused))} mount: the arm64 root goes to {fallback}")
    return fallback / f"{SUITE}-arm64"


def mount_all(root: Path) -> None:
    host(["mount", "-t", "proc", "proc", str(root / "proc")], "mount proc")
    # No /sys: the host's is an x86 one, and onnxruntime 1.32's cpuinfo reading it under the emulator dies
    # with SIGSEGV at import. Without it, 1.32 goes on; 1.20.1 aborts ("failed to parse the list of possible
    # processors"), so --onnxruntime below 1.21 says nothing about a Pi (docs/operations.md).
    host(["mount", "--bind", "/dev", str(root / "dev")], "mount dev")
    host(["mount", "-t", "tmpfs", "shm", str(root / "dev/shm")], "mount dev/shm")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    # This machine's CA bundle (pip's `cert`, e.g. for a TLS-inspecting egress proxy) for pip in the root.
    shutil.copyfile(HOST_CA, root / ROOT_CA.lstrip("/"))


def unmount_all(root: Path) -> None:
    for mount in reversed(MOUNTS):
        target = root / mount
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], check=False)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (from /proc/self/mounts)."""
    prefix = str(root.resolve())
    lines = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    points = [line.split()[1] for line in lines if len(line.split()) > 1]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


def remove_root(root: Path) -> None:
    """Delete a cached root, never through a mount: a /dev still bound inside (a run killed while mounted)
    would otherwise have the host's device nodes deleted with it."""
    if not root.exists():
        return
    unmount_all(root)
    left = mounts_under(root)
    if left:
        raise CheckFailedError("clean root", None, f"still mounted, not deleting: {', '.join(left)}")
    shutil.rmtree(root)


def chroot(root: Path, cpu: str, script: str, venv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` in the root under QEMU_CPU=cpu: every arm64 process it starts inherits the CPU."""
    env = {
        "QEMU_CPU": cpu,
        "PATH": f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "TZ": "UTC",
        "PIP_CERT": ROOT_CA,
        "SSL_CERT_FILE": ROOT_CA,
    }
    return subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", str(root), "/bin/sh", "-c", f"cd {SRC} && {script}"],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def describe_exit(result: subprocess.CompletedProcess[str]) -> str:
    code = result.returncode
    output = result.stdout + result.stderr
    if code in (SIGILL_EXIT, -signal.SIGILL) or "Illegal instruction" in output:
        return (
            f"Illegal instruction (SIGILL, exit {code}): a binary uses an instruction this CPU does not have"
        )
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        return f"killed by signal {signal.Signals(number).name} (exit {code})"
    return f"exit {code}"


def copy_source(root: Path) -> None:
    """The checkout's files (tracked and untracked, not ignored: no venv, no cache) into ``SRC``."""
    listing = host(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], "git ls-files",
                   cwd=REPO)  # fmt: skip
    target = root / SRC.lstrip("/")
    keep = {"contract/build", "build"}  # setuptools' build folders are git-ignored; nothing else is kept
    if target.exists():
        for child in target.iterdir():
            if child.name not in keep and not child.name.endswith(".egg-info"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    for name in listing.stdout.split("\0"):
        source = REPO / name
        if name and source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


BASE_VENV: Final = "/opt/venv"


def venv_digest(onnxruntime: str | None) -> str:
    digest = hashlib.sha256(b"".join((REPO / name).read_bytes() for name in DISTS))
    digest.update(str(onnxruntime).encode())
    return digest.hexdigest()


def ensure_venv(root: Path, venv: str, onnxruntime: str | None) -> None:
    """The project and its runtime dependencies (demo extra and reference cloud included) from PyPI.

    With ``onnxruntime``, the project's venv is copied (its scripts' ``#!`` lines moved to the copy) and that
    onnxruntime installed over it: the same venv but for that one package, without a second full install
    under emulation (~2.5 minutes)."""
    stamp = root / venv.lstrip("/") / ".pi-check-venv"
    if stamp.is_file() and stamp.read_text() == venv_digest(onnxruntime):
        log(f"venv {venv}: cached")
        return
    started = time.monotonic()
    if onnxruntime is None:
        log(f"venv {venv}: pip install -e ./contract -e '.[demo]' -e ./cloud (under QEMU_CPU={INSTALL_CPU})")
        script = (
            f"rm -rf {venv} && python3 -m venv {venv} && {venv}/bin/python -m pip install -q --upgrade pip && "
            f"{venv}/bin/python -m pip install -q -e ./contract -e '.[demo]' -e ./cloud"
        )
    else:
        ensure_venv(root, BASE_VENV, None)
        log(f"venv {venv}: a copy of {BASE_VENV} with onnxruntime {onnxruntime}")
        copy_venv(root, BASE_VENV, venv)
        # Over the project's own constraint (which excludes the known-bad versions): the check must see it.
        script = (
            f"{venv}/bin/python -m pip install -q --no-deps --force-reinstall 'onnxruntime=={onnxruntime}'"
        )
    result = chroot(root, INSTALL_CPU, script, venv, timeout=1800)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise CheckFailedError("pip install", INSTALL_CPU, f"{describe_exit(result)}\n{tail}")
    stamp.write_text(venv_digest(onnxruntime))
    log(f"venv {venv}: installed in {time.monotonic() - started:.0f} s")


def copy_venv(root: Path, source: str, target: str) -> None:
    """``source`` copied to ``target`` inside the root, its own files no longer naming ``source``: the
    scripts' ``#!`` lines and ``pyvenv.cfg``'s command (``home`` is the root's /usr/bin, unchanged)."""
    here, there = root / source.lstrip("/"), root / target.lstrip("/")
    if there.exists():
        shutil.rmtree(there)
    shutil.copytree(here, there, symlinks=True)
    (there / ".pi-check-venv").unlink(missing_ok=True)
    for path in [*(there / "bin").iterdir(), there / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if path.name == "pyvenv.cfg":
            path.write_bytes(data.replace(b" " + source.encode() + b"\n", b" " + target.encode() + b"\n"))
        elif data.startswith(b"#!" + source.encode() + b"/"):
            path.write_bytes(data.replace(source.encode() + b"/", target.encode() + b"/", 1))


# ----- the checks, per CPU -----


def step(root: Path, cpu: str, name: str, script: str, venv: str, timeout: float = 600) -> str:
    started = time.monotonic()
    try:
        result = chroot(root, cpu, script, venv, timeout)
    except subprocess.TimeoutExpired as exc:
        raise CheckFailedError(name, cpu, f"timed out after {timeout:.0f} s") from exc
    output = result.stdout + result.stderr
    if result.returncode != 0 or "Illegal instruction" in output:
        lines = output.strip().splitlines()
        detail = describe_exit(result)
        if name == "imports":
            started_imports = [line for line in lines if line.startswith(("import ", "FAILED "))]
            failed = [line for line in lines if line.startswith("FAILED ")]
            last = (failed or started_imports or ["(before the first import)"])[-1]
            detail = f"{detail}; at `{last}`"
        raise CheckFailedError(name, cpu, detail + "\n" + "\n".join(lines[-20:]))
    log(f"[{cpu}] {name}: ok ({time.monotonic() - started:.1f} s)")
    return result.stdout


AUXVAL: Final = (
    "python3 -c 'import ctypes; f = ctypes.CDLL(None).getauxval; f.restype = ctypes.c_ulong; "
    "f.argtypes = [ctypes.c_ulong]; print(f(16))'"
)


def check_cpu(root: Path, cpu: str, venv: str) -> None:
    """The emulated CPU is the one asked for: its AT_HWCAP has what that core has and lacks what it lacks."""
    hwcap = int(step(root, cpu, "cpu", AUXVAL, venv).strip())
    must, must_not = HWCAP_EXPECTED[cpu]
    if hwcap & must != must or hwcap & must_not:
        raise CheckFailedError("cpu", cpu, f"AT_HWCAP {hwcap:#x} is not this core's: QEMU_CPU not honoured")


def compare_probe(arm: dict[str, Any], x86: dict[str, Any], cpu: str) -> None:
    if arm["exact"] != x86["exact"]:
        keys = sorted(k for k in x86["exact"] if arm["exact"].get(k) != x86["exact"][k])
        diff = {k: {"arm64": arm["exact"].get(k), "x86": x86["exact"][k]} for k in keys}
        raise CheckFailedError("probe", cpu, f"outputs differ from x86: {json.dumps(diff)[:3000]}")
    tolerance = x86["tolerance"]
    if arm["approx"].keys() != x86["approx"].keys():
        raise CheckFailedError("probe", cpu, "different float outputs from x86")
    worst = 0.0
    for key, values in x86["approx"].items():
        other = arm["approx"][key]
        if len(other) != len(values):
            raise CheckFailedError("probe", cpu, f"{key}: {len(other)} values, x86 has {len(values)}")
        for a, b in zip(other, values, strict=True):
            if not math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance):
                raise CheckFailedError("probe", cpu, f"{key}: {a!r} vs x86 {b!r} (tolerance {tolerance})")
            worst = max(worst, abs(a - b))
    log(f"[{cpu}] probe: identical to x86; floats within {worst:.2e} (tolerance {tolerance})")


def x86_probe() -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(REPO / "scripts/pi_probe.py")], text=True,
                            capture_output=True, check=False, cwd=REPO)  # fmt: skip
    if result.returncode != 0:
        raise CheckFailedError("probe on x86", None, result.stderr[-3000:])
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def run_checks(root: Path, cpus: Sequence[str], venv: str, probe: dict[str, Any] | None) -> None:
    for cpu in cpus:
        check_cpu(root, cpu, venv)
        step(root, cpu, "imports", "python scripts/pi_imports.py", venv)
        step(
            root,
            cpu,
            "check-config",
            "rm -f config/keys/token-*.pem && edge-gateway token keygen --out config/keys >/dev/null && "
            "edge-gateway check-config config/gateway.example.toml",
            venv,
        )
        out = step(
            root, cpu, "demo", f"edge-gateway demo --duration {DEMO_SECONDS} --report-dir /tmp/demo", venv
        )
        acked = ACKED.search(out)
        if acked is None or int(acked.group(1)) <= 0:
            summary = [line for line in out.splitlines() if line.startswith("summary:")]
            raise CheckFailedError("demo", cpu, f"no acked exposures: {summary or out[-1500:]}")
        log(f"[{cpu}] demo: {acked.group(0)}")
        if probe is not None:
            compare_probe(
                json.loads(step(root, cpu, "probe", "python scripts/pi_probe.py", venv)), probe, cpu
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="append", choices=CPUS, help="only these CPUs (default: all)")
    parser.add_argument("--onnxruntime", metavar="VERSION", help="check a venv with this onnxruntime instead")
    parser.add_argument("--root", type=Path, help="the cached arm64 root (default: .pi-root/bookworm-arm64)")
    args = parser.parse_args(argv)
    if platform.machine() == "aarch64":
        # On a Pi (or any arm64 machine) there is nothing to emulate: `make test` has just run the whole
        # suite on the real CPU. QEMU_CPU would not apply, and the LSE check would fail on a Pi 5's A76.
        log("this machine is arm64: the suite ran on its own CPU; nothing to emulate")
        return 0
    if os.geteuid() != 0:
        print("pi-check: needs root (apt, debootstrap, mount, chroot)", file=sys.stderr)
        return 2
    started = time.monotonic()
    cpus = args.cpu or list(CPUS)
    venv = BASE_VENV if args.onnxruntime is None else f"/opt/venv-onnxruntime-{args.onnxruntime}"
    root: Path = (args.root or default_root()).resolve()
    try:
        ensure_host_tools()
        ensure_root(root)
        copy_source(root)
        mount_all(root)
        try:
            ensure_venv(root, venv, args.onnxruntime)
            probe = x86_probe() if args.onnxruntime is None else None
            run_checks(root, cpus, venv, probe)
        finally:
            unmount_all(root)
    except CheckFailedError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    log(f"passed on {', '.join(cpus)} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
