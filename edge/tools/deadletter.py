"""``edge-gateway dead-letter list`` / ``export``: the events the cloud refused (docs/sync.md "Push").

Dead letters are telemetry the cloud refused by name and the gateway gave up; ``--parked`` shows instead
the events it keeps and retries (privacy and conversion events refused by name, events failing alone).
Both read the ledger file read-only, beside a running daemon. ``list`` prints one line per event (no
shopper ids); ``export`` prints JSON lines with the whole event, for the cloud's operators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from edge.clock import iso_utc
from edge.ledger.deadletter import read_refused
from edge.ledger.readonly import READ_ERRORS
from edge.tools import settings_for_tool


def run(config: Path, tool: str, out: TextIO, err: TextIO, *, parked: bool = False) -> int:
    """``edge-gateway dead-letter <list|export> --config F [--parked]``; only ``[ledger] path`` is needed."""
    settings = settings_for_tool(config, err)
    if settings is None:
        return 1
    path = settings.ledger.path
    try:
        records = list(read_refused(path, parked=parked))
    except READ_ERRORS as exc:
        print(f"{path}: cannot read the ledger ({exc})", file=err)
        return 1
    if tool == "export":
        for record in records:
            print(json.dumps(record.as_json(), separators=(",", ":"), ensure_ascii=False), file=out)
        return 0
    what = "parked events" if parked else "dead letters"
    print(f"{len(records)} {what} in {path}", file=out)
    for record in records:
        since = iso_utc(record.since_wall)
        retry = f" next {iso_utc(record.next_wall)}" if record.next_wall is not None else ""
        print(
            f"{since} {record.cls:<10} {record.kind:<12} {record.event_id} x{record.attempts}{retry}: "
            f"{record.reason}",
            file=out,
        )
    return 0
