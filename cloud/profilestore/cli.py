"""The ``profile-store`` command: run the reference profile store until SIGTERM/SIGINT; ``profile-store report``
prints the chain's cross-channel table (``profilestore.report``).

Importing this module is cheap (argparse only); the server is imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Final

from profilestore import __version__

_LOGGER = logging.getLogger("profilestore")
# Plain text on stderr (journald or the container's log). Nothing it logs carries a secret: tokens travel
# in headers, which are never logged (nor is a request body), and database URLs lose their credentials.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """A bad argument or environment; the message is printed and the command exits with 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        required=True,
        help="database: sqlite:///abs/path.db, sqlite://relative.db, a file path, or postgresql://...",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on ([::1]:8080 for IPv6; port 0: any)"
    )
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument(
        "--admin-token-env", metavar="NAME", help="environment variable holding the admin token"
    )
    token.add_argument("--admin-token-file", metavar="PATH", type=Path, help="file holding the admin token")
    parser.add_argument(
        "--member-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="how long a store holds a shopper it saw in its pushes or fetched, unless seen again"
        " (home shoppers: always); default 30",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"--listen {text!r}: expected HOST:PORT")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


def admin_token(args: argparse.Namespace) -> str:
    """The admin token from the named variable or file (never from the command line itself)."""
    if args.admin_token_env is not None:
        value = os.environ.get(args.admin_token_env, "").strip()
        if not value:
            raise CliError(f"--admin-token-env: variable {args.admin_token_env} is unset or empty")
        return value
    path: Path = args.admin_token_file
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--admin-token-file: cannot read {path}: {exc}") from exc
    if not value:
        raise CliError(f"--admin-token-file: {path} is empty")
    return value


def check_database(url: str) -> None:
    """CliError if ``url`` is not a database URL, or names a SQLite file in a folder that does not exist."""
    from profilestore.storage import database_kind  # noqa: PLC0415

    try:
        kind, target = database_kind(url)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if kind == "sqlite" and not Path(target).parent.is_dir():
        raise CliError(f"--db: folder {Path(target).parent} does not exist")


def member_days(args: argparse.Namespace) -> float:
    """--member-days, checked: (0, 3650] days."""
    from profilestore.const import DEFAULT_MEMBER_DAYS, MAX_MEMBER_DAYS  # noqa: PLC0415

    days = DEFAULT_MEMBER_DAYS if args.member_days is None else float(args.member_days)
    if not 0 < days <= MAX_MEMBER_DAYS:
        raise CliError(
            f"--member-days {args.member_days}: expected more than 0 and at most {MAX_MEMBER_DAYS}"
        )
    return days


async def _serve_until_signal(
    url: str, token: str, host: str, port: int, *, access_log: bool, days: float
) -> None:
    from profilestore.server import serve  # noqa: PLC0415 - aiohttp and the drivers only when run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        url, admin_token=token, host=host, port=port, access_log=access_log, member_days=days
    ) as base_url:
        _LOGGER.info(
            "profile store ready at %s (database %s; a store holds a shopper it saw for %g days)",
            base_url,
            url.rsplit("@", maxsplit=1)[-1],
            days,
        )
        await stop.wait()
        _LOGGER.info("stopping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-store",
        description="The reference cloud profile store: the sync API of docs/sync-openapi.yaml over HTTP",
        epilog="`profile-store report --db URL --since D --until D` prints the chain's cross-channel table"
        " (`profile-store report --help`).",
    )
    parser.add_argument("--version", action="version", version=f"profile-store {__version__}")
    add_arguments(parser)
    return parser


def setup_logging(level: str) -> None:
    """One stderr handler on the root logger, at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(args: argparse.Namespace) -> int:
    from profilestore.schema import SchemaTooNewError  # noqa: PLC0415
    from profilestore.storage import StorageUnavailableError  # noqa: PLC0415

    try:
        host, port = parse_listen(args.listen)
        token = admin_token(args)
        check_database(args.db)
        days = member_days(args)
    except CliError as exc:
        print(f"profile-store: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    try:
        asyncio.run(_serve_until_signal(args.db, token, host, port, access_log=args.access_log, days=days))
    except (StorageUnavailableError, SchemaTooNewError, OSError) as exc:
        print(f"profile-store: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["report"]:  # a command of its own: reads the database, serves nothing
        from profilestore.report import run_report  # noqa: PLC0415

        return run_report(args[1:])
    return run(build_parser().parse_args(args))
