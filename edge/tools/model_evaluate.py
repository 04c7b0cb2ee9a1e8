"""``edge-gateway model evaluate``: a candidate model's off-policy estimate against the running model's.

Reads the ledger beside a running gateway (read-only, ``edge/ledger/readonly.py``) and the models from disk;
writes nothing. The numbers and the verdict come from ``edge.measure.ope`` (docs/measurement.md, "Off-policy
evaluation of a candidate model"); how an operator uses them is in docs/models.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, TextIO

from edge.clock import Clock, SystemClock, iso_utc
from edge.decide.catalog import CatalogError
from edge.decide.manifest import ModelError
from edge.decide.scorer import load_model
from edge.ledger.readonly import READ_ERRORS, read_only
from edge.measure.ope import Comparison, Estimate, compare, running_model
from edge.tools import settings_for_tool, store_catalog
from edge.tools.report import ArgumentError, parse_period

# Without --since: the last four weeks, about two attribution windows of decisions with their outcomes.
DEFAULT_DAYS: Final = 28
_DAY_S: Final = 86_400.0


def _interval(values: list[float] | None) -> str:
    if values is None:
        return f"{'-':<26}"
    value, low, high = values
    return f"{value:.4f} [{low:.4f}, {high:.4f}]".ljust(26)


def _line(label: str, estimate: Estimate) -> str:
    data = estimate.as_json()
    ess = "-" if data["ess"] is None else f"{data['ess']:.1f}"
    return (
        f"{label:<10} {estimate.model_version:<20} {data['n']:>8} {ess:>9}  "
        f"{_interval(data['ips'])} {_interval(data['snips'])} {_interval(data['dr'])}"
    ).rstrip()


def render(result: Comparison, since: float, until: float, window_days: int, out: TextIO) -> None:
    """The comparison as the operator reads it: one line per model, what was skipped, the verdict."""
    percent = f"{result.confidence * 100:g} %"
    print(f"off-policy evaluation: decisions from {iso_utc(since)} to {iso_utc(until)}", file=out)
    print(
        f"value = share of identified decisions whose shown offer was bought within {window_days} days "
        f"(the report's attribution); intervals at {percent}",
        file=out,
    )
    header = f"{'':<10} {'model':<20} {'n':>8} {'ESS':>9}  {'IPS':<26} {'SNIPS':<26} {'DR':<26}"
    print(header.rstrip(), file=out)
    print(_line("candidate", result.candidate), file=out)
    print(_line("running", result.running), file=out)
    skipped = result.candidate.skipped
    if skipped:
        listed = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
        print(f"skipped: {listed}", file=out)
    else:
        print("skipped: none", file=out)
    d = result.difference
    if d is not None:
        print(
            f"difference (DR, candidate - running, paired): {d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}]",
            file=out,
        )
    if result.candidate.n == 0:
        print("verdict: nothing to evaluate in this period (see skipped)", file=out)
    else:
        print(f"verdict: candidate {result.verdict} at {percent}", file=out)


def run(
    config: Path,
    candidate: Path,
    manifest: Path | None,
    since: str | None,
    until: str | None,
    out: TextIO,
    err: TextIO,
    *,
    clock: Clock | None = None,
) -> int:
    """``edge-gateway model evaluate --config F --candidate F.onnx [--manifest F.json] [--since D] [--until D]``:
    0 with the comparison printed, 1 when a file cannot be read, 2 for a bad argument."""
    settings = settings_for_tool(config, err)
    if settings is None:
        return 1
    now = (clock or SystemClock()).wall()
    tz = settings.decisions.policy.tz
    try:
        period = parse_period(
            since if since is not None else iso_utc(now - DEFAULT_DAYS * _DAY_S),
            until if until is not None else iso_utc(now),
            tz,
        )
    except ArgumentError as exc:
        print(f"model evaluate: {exc}", file=err)
        return 2
    try:
        scorer = load_model(candidate, manifest if manifest is not None else candidate.with_suffix(".json"))
        running = running_model(settings)
    except ModelError as exc:
        print(f"model evaluate: {exc}", file=err)
        return 1
    path = settings.ledger.path
    try:
        with read_only(path) as conn:
            offers = store_catalog(conn, settings.decisions.offers_file)
            result = compare(settings, conn, scorer, period.since, period.until, offers, running=running)
    except CatalogError as exc:
        print(f"model evaluate: {exc}", file=err)
        return 1
    except READ_ERRORS as exc:
        print(f"{path}: cannot read the ledger ({exc})", file=err)
        return 1
    render(result, period.since, period.until, settings.measurement.attribution_window_days, out)
    return 0
