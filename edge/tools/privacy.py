"""``edge-gateway privacy export --shopper ID [--format json|html]``: what the store holds about a shopper.

For store staff answering a shopper at the store (docs/privacy.md "Right of access"). It reads the ledger
beside the running gateway and writes the audit row of this export in the same transaction: every use is on
record (when, by which tool, the operator's note), with the shopper named by a keyed hash only. Where the
shopper is right now lives in the running gateway's memory, never on disk: the export says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from edge.clock import Clock, SystemClock
from edge.ledger.privacy import beside, cloud_offer_bodies, read_shopper, record_export
from edge.ledger.readonly import READ_ERRORS
from edge.privacy.export import ExportContext, build_export
from edge.privacy.page import render_html
from edge.privacy.sources import explainer_for, offer_titles, retention_of, titles_from_bodies
from edge.tools import settings_for_tool

FORMATS = ("json", "html")


def run(
    config: Path,
    shopper_id: str,
    fmt: str,
    out: TextIO,
    err: TextIO,
    *,
    operator: str = "",
    clock: Clock | None = None,
) -> int:
    settings = settings_for_tool(config, err)
    if settings is None:
        return 1
    if not shopper_id or len(shopper_id) > 128 or not shopper_id.isprintable():
        print("--shopper: 1..128 printable characters", file=err)
        return 2
    now = (clock or SystemClock()).wall()
    path = settings.ledger.path
    detail = json.dumps({"format": fmt, "operator": operator[:64]}, separators=(",", ":"))
    try:
        with beside(path) as tx:
            rows = read_shopper(tx, shopper_id)
            bodies = cloud_offer_bodies(tx)
            record_export(shopper_id, now, "cli", detail)(tx)
    except READ_ERRORS as exc:
        print(f"{path}: cannot read the ledger or record the export ({exc})", file=err)
        return 1
    ctx = ExportContext(
        store_id=settings.store.id,
        generated_wall=now,
        retention=retention_of(settings),
        offer_titles=offer_titles(settings, titles_from_bodies(bodies)),
    )
    doc = build_export(rows, ctx, explainer_for(settings))
    if fmt == "html":
        out.write(render_html(doc))
    else:
        json.dump(doc, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return 0
