"""Regenerate the parts of docs/mqtt.md that come from the code (the rejection tables).

python scripts/mqtt_docs.py           # rewrite docs/mqtt.md in place
python scripts/mqtt_docs.py --check   # exit 1 if it is stale (tests/sources/test_rejections.py does too)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.sources.rejections import rejection_tables  # noqa: E402 - after the path is set

DOC = REPO / "docs" / "mqtt.md"
BEGIN = "<!-- generated: rejections (python scripts/mqtt_docs.py, from edge/sources/rejections.py) -->"
END = "<!-- end generated: rejections -->"


def generated(text: str) -> str:
    """``text`` with the section between the markers replaced by what the code says now."""
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        msg = f"{DOC} lacks the markers {BEGIN!r} ... {END!r}"
        raise SystemExit(msg)
    return f"{head}{BEGIN}\n\n{rejection_tables()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether docs/mqtt.md is stale")
    args = parser.parse_args()
    current = DOC.read_text(encoding="utf-8")
    wanted = generated(current)
    if args.check:
        if current != wanted:
            print("docs/mqtt.md is stale: run python scripts/mqtt_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
