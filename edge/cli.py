"""The ``edge-gateway`` command: run, demo, check-config, and the operator's tools."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import signal
import sys
from pathlib import Path
from typing import Final

from edge import __version__
from edge.config import ConfigError, GatewaySettings
from edge.control.logs import setup_logging as setup_logging  # noqa: PLC0414 - re-exported: the CLI's set-up
from edge.control.preflight import load_checked, warnings_for
from edge.decide.manifest import ModelError

log = logging.getLogger("edge")
PROFILE_STORE_MOVED: Final = (
    "edge-gateway profile-store: the reference cloud profile store is its own program now, `profile-store`, "
    "with the same options (pip install -e contract -e cloud, from the repository; docs/profile-store.md)"
)


def _load_or_report(path: Path, headline: str) -> GatewaySettings | None:
    """The checked settings, or None after printing every problem under ``headline``."""
    try:
        return load_checked(path)
    except ConfigError as exc:
        print(f"{path}: {headline}{len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check_config(path: Path) -> int:
    settings = _load_or_report(path, "")
    if settings is None:
        return 1
    for warning in warnings_for(settings):
        print(f"  warning: {warning}")
    print(f"{path}: OK")
    return 0


async def _run_until_signal(settings: GatewaySettings, config_version: str, path: Path) -> None:
    from edge.daemon import Gateway  # noqa: PLC0415 - keeps check-config free of onnxruntime start-up

    gateway = Gateway(settings, config_version=f"file:{config_version}", config_path=path)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.request_stop)
    # systemctl reload: run the model the store's pointer names (after `edge-gateway model rollback`).
    loop.add_signal_handler(signal.SIGHUP, gateway.request_model_reload)
    await gateway.run()


def _run(path: Path) -> int:
    settings = _load_or_report(path, "refusing to start, ")
    if settings is None:
        return 2
    # The daemon logs to stdout (journald under systemd); its tools keep stdout for their output.
    setup_logging(settings.logging.level, json_format=settings.logging.json_format, stream=sys.stdout)
    for warning in warnings_for(settings):
        log.warning("config: %s", warning)
    config_version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    try:
        asyncio.run(_run_until_signal(settings, config_version, path))
    except ModelError as exc:
        # The checks above read the model's manifest and bytes without onnxruntime (check-config stays
        # light); the graph itself is checked when the session opens at start: the same refusal, one step on.
        print(f"{path}: refusing to start, 1 problem(s)\n  decisions.model: {exc}", file=sys.stderr)
        return 2
    return 0


def _demo(duration: float, broker: str | None, report_dir: Path | None = None) -> int:
    from edge.demo.broker import BrokerUnavailableError  # noqa: PLC0415
    from edge.demo.cloud import CloudUnavailableError  # noqa: PLC0415
    from edge.demo.run import run_demo  # noqa: PLC0415

    setup_logging("WARNING", json_format=False)
    address = None
    if broker:
        host, _, port = broker.rpartition(":")
        address = (host or "127.0.0.1", int(port))
    try:
        summary = asyncio.run(run_demo(duration, out=sys.stdout, broker=address, report_dir=report_dir))
    except (BrokerUnavailableError, CloudUnavailableError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return 0 if summary.exposure_rows > 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-gateway", description="In-store edge gateway")
    parser.add_argument("--version", action="version", version=f"edge-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", type=Path, required=True, help="path to the TOML configuration")
    check = commands.add_parser("check-config", help="validate a configuration file and list every problem")
    check.add_argument("path", type=Path)
    demo = commands.add_parser("demo", help="a simulated store through a real MQTT round trip")
    demo.add_argument("--duration", type=float, default=10.0, help="seconds of simulated traffic")
    demo.add_argument(
        "--broker", default=None, help="host:port of a broker to use instead of the embedded one"
    )
    demo.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="folder for the run's report (default: a new temp folder)",
    )
    token = commands.add_parser(
        "token", help="trial keys and signed check-ins (the cloud's part, for integrators)"
    )
    token_commands = token.add_subparsers(dest="tool", required=True)
    keygen = token_commands.add_parser("keygen", help="write token-private.pem and token-public.pem")
    keygen.add_argument("--out", type=Path, required=True, help="folder for the two PEM files")
    checkin = token_commands.add_parser("checkin", help="print a check-in payload with a signed token")
    checkin.add_argument("--key", type=Path, required=True, help="token-private.pem from keygen")
    checkin.add_argument("--store", required=True, help="store id (the token audience)")
    checkin.add_argument("--shopper", required=True, help="pseudonymous shopper id (sub)")
    checkin.add_argument("--zone", required=True)
    checkin.add_argument("--source", default="app", choices=["app", "kiosk", "qr"])
    camera = commands.add_parser("camera", help="installer tools for the opt-in camera")
    camera_commands = camera.add_subparsers(dest="tool", required=True)
    camera_test = camera_commands.add_parser(
        "test", help="open a camera as the gateway would; print fps, people in view and QR check-ins"
    )
    camera_test.add_argument(
        "--source", required=True, help="V4L2 index ('0'), /dev/videoN, rtsp/http URL or file"
    )
    camera_test.add_argument("--seconds", type=float, default=10.0)
    camera_test.add_argument("--loop", action="store_true", help="play a video file again at its end")
    camera_test.add_argument(
        "--config", type=Path, default=None, help="the gateway's config: verify QR tokens with its keys"
    )
    ble = commands.add_parser("ble", help="installer tools for BLE presence")
    ble_commands = ble.add_subparsers(dest="tool", required=True)
    ble_scan = ble_commands.add_parser(
        "scan", help="list what the gateway hears: type, identity or anonymous, RSSI, zone"
    )
    ble_scan.add_argument("--config", type=Path, required=True)
    ble_scan.add_argument("--seconds", type=float, default=30.0)
    ble_cal = ble_commands.add_parser(
        "calibrate", help="record a reference device at a zone's edge; print thresholds"
    )
    ble_cal.add_argument("--config", type=Path, required=True)
    ble_cal.add_argument("--zone", required=True)
    ble_cal.add_argument("--seconds", type=float, default=30.0)
    ble_cal.add_argument(
        "--beacon", default=None, help="name of the configured store beacon used as reference"
    )
    model = commands.add_parser("model", help="the installed offer models ([control] state_dir)")
    model_commands = model.add_subparsers(dest="tool", required=True)
    model_list = model_commands.add_parser("list", help="installed versions, the current one, sha256")
    model_list.add_argument("--config", type=Path, required=True)
    model_rollback = model_commands.add_parser(
        "rollback", help="point back to the previous version (checked first); then systemctl reload"
    )
    model_rollback.add_argument("--config", type=Path, required=True)
    model_evaluate = model_commands.add_parser(
        "evaluate",
        help="a candidate model's value on the logged decisions (off-policy) against the running model's",
    )
    model_evaluate.add_argument("--config", type=Path, required=True)
    model_evaluate.add_argument("--candidate", type=Path, required=True, help="the candidate model (.onnx)")
    model_evaluate.add_argument(
        "--manifest", type=Path, default=None, help="its manifest (default: the .onnx path with .json)"
    )
    model_evaluate.add_argument(
        "--since",
        default=None,
        help="first day (YYYY-MM-DD, store time zone) or ISO-8601 instant (4 weeks ago)",
    )
    model_evaluate.add_argument(
        "--until", default=None, help="last day, included (YYYY-MM-DD), or ISO-8601 instant, excluded (now)"
    )
    dead = commands.add_parser(
        "dead-letter", help="events the cloud refused: given up, or parked and retried"
    )
    dead_commands = dead.add_subparsers(dest="tool", required=True)
    for name, text in (
        ("list", "one line per event: when, class, kind, id, attempts, reason (no shopper ids)"),
        ("export", "JSON lines: each event as it was pushed, with the reason (for the cloud's operators)"),
    ):
        tool = dead_commands.add_parser(name, help=text)
        tool.add_argument("--config", type=Path, required=True)
        tool.add_argument(
            "--parked", action="store_true", help="the events kept and retried instead of the dead letters"
        )
    privacy = commands.add_parser(
        "privacy", help="the shoppers' rights: what the store holds about a shopper"
    )
    privacy_commands = privacy.add_subparsers(dest="tool", required=True)
    export = privacy_commands.add_parser(
        "export", help="everything the store holds about one shopper, and why each offer (audit-logged)"
    )
    export.add_argument("--config", type=Path, required=True)
    export.add_argument("--shopper", required=True, help="the shopper's id")
    export.add_argument("--format", choices=("json", "html"), default="json")
    export.add_argument("--operator", default="", help="who asks (kept in the audit row, 64 characters)")
    report = commands.add_parser(
        "report", help="what the touchpoints achieved: report.html and summary.json (docs/measurement.md)"
    )
    report.add_argument("--config", type=Path, required=True)
    report.add_argument(
        "--since", required=True, help="first day (YYYY-MM-DD, store time zone) or ISO-8601 instant"
    )
    report.add_argument(
        "--until", required=True, help="last day, included (YYYY-MM-DD), or ISO-8601 instant, excluded"
    )
    report.add_argument("--out", type=Path, required=True, help="folder for report.html and summary.json")
    report.add_argument(
        "--candidate", type=Path, default=None, help="a candidate model (.onnx) to evaluate off-policy"
    )
    # The reference cloud is its own program now: the old command says where it went (any options).
    commands.add_parser(
        "profile-store", add_help=False, help="moved: the reference cloud is the `profile-store` command"
    )
    return parser


def _ble(args: argparse.Namespace) -> int:
    from edge.tools import ble  # noqa: PLC0415 - bleak only when asked for

    settings = _load_or_report(args.config, "")
    if settings is None:
        return 1
    setup_logging("WARNING", json_format=False)
    if args.tool == "scan":
        asyncio.run(ble.scan(settings, args.seconds, sys.stdout))
        return 0
    result = asyncio.run(ble.calibrate(settings, args.zone, args.seconds, sys.stdout, beacon=args.beacon))
    return 0 if result is not None else 1


def _camera(args: argparse.Namespace) -> int:
    from edge.tools import camera  # noqa: PLC0415 - OpenCV only when asked for

    settings = None
    if args.config is not None:
        settings = _load_or_report(args.config, "")
        if settings is None:
            return 1
    totals = camera.run_test(args.source, args.seconds, sys.stdout, settings=settings, loop=args.loop)
    return 0 if totals["frames"] > 0 else 1


def _token(args: argparse.Namespace) -> int:
    from edge import devtools  # noqa: PLC0415

    if args.tool == "keygen":
        private_path, public_path = devtools.keygen(args.out)
        print(f"wrote {public_path} (put it in identity.public_key_files)")
        print(f"wrote {private_path} (the cloud's secret: keep it off gateways)")
        return 0
    print(
        devtools.checkin_payload(
            args.key, store=args.store, shopper=args.shopper, zone=args.zone, source=args.source
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "profile-store":  # whatever its old options were
        print(PROFILE_STORE_MOVED, file=sys.stderr)
        return 2
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "run":
        return _run(args.config)
    if args.command == "token":
        return _token(args)
    if args.command == "ble":
        return _ble(args)
    if args.command == "camera":
        return _camera(args)
    if args.command == "model" and args.tool == "evaluate":
        from edge.tools import model_evaluate  # noqa: PLC0415 - onnxruntime only when asked for

        return model_evaluate.run(
            args.config, args.candidate, args.manifest, args.since, args.until, sys.stdout, sys.stderr
        )
    if args.command == "model":
        from edge.tools import model  # noqa: PLC0415 - onnxruntime only when asked for

        return model.run(args.config, args.tool, sys.stdout, sys.stderr)
    if args.command == "dead-letter":
        from edge.tools import deadletter  # noqa: PLC0415

        return deadletter.run(args.config, args.tool, sys.stdout, sys.stderr, parked=args.parked)
    if args.command == "privacy":
        from edge.tools import privacy  # noqa: PLC0415 - onnxruntime only when asked for

        return privacy.run(
            args.config, args.shopper, args.format, sys.stdout, sys.stderr, operator=args.operator
        )
    if args.command == "report":
        from edge.tools import report  # noqa: PLC0415 - Jinja2 and matplotlib only when asked for

        return report.run(
            args.config, args.since, args.until, args.out, sys.stdout, sys.stderr, candidate=args.candidate
        )
    return _demo(args.duration, args.broker, args.report_dir)


if __name__ == "__main__":
    sys.exit(main())
