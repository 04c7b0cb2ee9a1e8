"""How the outbox's encodings of an event's data compare: bytes stored per event, and CPU to encode and decode.

The options docs/ledger.md "Outbox on disk" weighed, over the events of ``bench.outbox_disk`` (the same mix
and seed): the compact JSON text, deflated with and without a dictionary of the field names, the typed form of
edge/ledger/typedjson.py alone and as stored (``encode_data``: typed, deflated with the dictionary), and
compressed batches of several events. Only the data is counted: the rest of a compact row and its two indexes
add about the same to each option (~85 bytes, ``bench.outbox_disk``'s ``on_disk``). Not part of ``make
bench``: it records why the outbox stores what it stores.

Run alone: ``.venv/bin/python -m bench.outbox_encodings``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import zlib
from collections.abc import Callable

from bench.outbox_disk import _events
from edge.clock import ManualClock
from edge.ledger.eventcodec import decode_data, encode_data
from edge.ledger.typedjson import SHAPES, pack, wall_ms

EVENTS = 30_000
BATCHES = (16, 64, 256)
# For the JSON text, a dictionary of the same words spelled as JSON (the fair comparison with DICTIONARY_1).
JSON_DICTIONARY = "".join(
    [
        *(f'"{key}":' for keys in SHAPES for key in keys),
        *(f'"{word}",' for word in ("presence_ble", "camera_checkin", "clienteling", "measurement", "app")),
    ]
).encode()


def _deflate(raw: bytes, zdict: bytes | None = None) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -12, 4, zlib.Z_DEFAULT_STRATEGY, *([zdict] if zdict else []))
    return packer.compress(raw) + packer.flush()


def _cpu_us(work: Callable[[], object], count: int, repeats: int = 5) -> float:
    """The least CPU time of ``repeats`` passes, per item (the least is what contention did not add)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def run(events: int = EVENTS) -> dict[str, object]:
    batch = _events(random.Random(0), events, ManualClock())
    texts = [json.dumps(data, separators=(",", ":"), ensure_ascii=False) for _, _, data, _, _ in batch]
    times = [wall_ms(at) for *_, at in batch]
    raws = [text.encode() for text in texts]
    typed = [pack(json.loads(text), at_ms) for text, at_ms in zip(texts, times, strict=True)]
    stored = [encode_data(text, at_ms) for text, at_ms in zip(texts, times, strict=True)]

    def mean(sizes: list[int]) -> float:
        return round(statistics.mean(sizes), 1)

    result: dict[str, object] = {
        "events": events,
        "json_text": mean([len(raw) for raw in raws]),
        "json_deflate": mean([len(_deflate(raw)) for raw in raws]),
        "json_deflate_dictionary": mean([len(_deflate(raw, JSON_DICTIONARY)) for raw in raws]),
        "typed": mean([len(value) for value in typed]),
        "typed_deflate_dictionary_stored": mean([len(value) - 1 for value in stored]),
    }
    for size in BATCHES:
        total = sum(len(zlib.compress(b"\n".join(raws[i : i + size]), 9)) for i in range(0, events, size))
        result[f"json_batches_of_{size}"] = round(total / events, 1)
    pairs = list(zip(texts, times, strict=True))
    rows = list(zip(stored, times, strict=True))
    result["encode_cpu_us"] = round(_cpu_us(lambda: [encode_data(*pair) for pair in pairs], events), 1)
    result["decode_cpu_us"] = round(_cpu_us(lambda: [decode_data(*row) for row in rows], events), 1)
    result["json_dumps_cpu_us"] = round(
        _cpu_us(lambda: [json.dumps(data, separators=(",", ":")) for _, _, data, _, _ in batch], events), 1
    )
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
