"""Import the gateway's runtime dependencies, then every module of ``edge/``, one by one (scripts/pi_check.py).

Runs inside the emulated Pi: each name is printed (flushed) *before* it is imported, so when the process
dies on an instruction the CPU does not have (SIGILL, exit 132) the last line names the module. Imports
that raise are reported and the run goes on; the exit status is 1 if any failed. Standard library only at
the top: nothing of the gateway is imported before its turn.

The dependency list is the installed distribution's own (``importlib.metadata``: ``Requires-Dist`` without
an extra), mapped to import names through ``packages_distributions``; the module list is
``pkgutil.walk_packages`` over ``edge``. ``SKIPPED`` names modules left out, with the reason (printed on every run).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
import sys
import traceback
from typing import Final

DISTRIBUTION: Final = "edge-gateway"
# module name -> why it is not imported on the Pi. Printed on every run.
SKIPPED: Final[dict[str, str]] = {
    "edge.__main__": "`python -m edge`: importing it runs the CLI; its one import, edge.cli, is imported",
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_imports() -> list[str]:
    """Top-level import names of the distribution's runtime requirements (extras left out)."""
    by_dist: dict[str, list[str]] = {}
    for top, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(_normal(dist), []).append(top)
    names: list[str] = []
    for requirement in importlib.metadata.requires(DISTRIBUTION) or []:
        if "extra ==" in requirement.replace("extra==", "extra =="):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match is None:
            raise SystemExit(f"unreadable requirement {requirement!r}")
        tops = sorted(t for t in by_dist.get(_normal(match.group()), []) if not t.startswith("_"))
        if not tops:
            raise SystemExit(f"requirement {match.group()}: no importable top-level name installed")
        names.extend(tops)
    return names


def edge_modules() -> list[str]:
    import edge  # noqa: PLC0415 - imported in its turn, after the dependencies

    def failed(name: str) -> None:
        raise ImportError(f"walking {name}") from None

    return sorted(info.name for info in pkgutil.walk_packages(edge.__path__, "edge.", onerror=failed))


def _import_all(names: list[str], kind: str) -> list[str]:
    failures = []
    for name in names:
        if name in SKIPPED:
            print(f"skip {kind} {name}: {SKIPPED[name]}", flush=True)
            continue
        print(f"import {kind} {name}", flush=True)
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next module
            print(f"FAILED {kind} {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()
            failures.append(name)
    return failures


def main() -> int:
    deps = runtime_imports()
    failures = _import_all(deps, "dependency")
    print("import edge (package walk)", flush=True)
    modules = ["edge", *edge_modules()]
    failures += _import_all(modules, "module")
    print(
        f"imported {len(deps)} dependencies and {len(modules) - len(SKIPPED)} edge modules; "
        f"skipped {len(SKIPPED)}; failed {len(failures)}: {' '.join(failures) or '-'}",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
