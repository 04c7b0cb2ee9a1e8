"""Bytes to JSON without surprises: capped gzip, strict UTF-8, and a parse that marks what a store can't keep.

Pure functions over bytes and parsed values. Problems that concern the whole body raise ``BodyError``; values
that are parseable but unstorable (non-finite numbers, huge integers, duplicate keys, NUL or lone surrogates
in strings, deep nesting) are marked during the parse and found by ``json_problem``, so that one bad event
in a batch can be rejected on its own.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any, Final

from profilestore.const import MAX_JSON_DEPTH, MAX_JSON_INT

# Strings that PostgreSQL's text type refuses (NUL) or that cannot be encoded as UTF-8 (lone surrogates).
_BAD_CHARS: Final = re.compile("[\x00\ud800-\udfff]")
# Longest decimal integer literal that can be within MAX_JSON_INT (sign included); longer ones are not
# even converted, which also keeps Python's int-from-str limit out of the way.
_MAX_INT_LITERAL: Final = 20
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_GZIP_MAGIC: Final = b"\x1f\x8b"
# Decompression step: output is produced at most this much at a time, so a bomb never inflates past the cap.
_INFLATE_STEP: Final = 64 * 1024


class BodyError(ValueError):
    """A body that cannot be used at all; ``status`` and ``code`` are the HTTP answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class Unstorable:
    """Stands in the parsed value for something valid JSON but unstorable; ``reason`` says what."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.reason}>"


class DuplicateKeys(dict[str, Any]):
    """An object in which some key appeared twice (the parse keeps the last value, as JSON parsers do)."""


def gunzip(data: bytes, limit: int) -> bytes:
    """The decompressed gzip ``data`` (one or more members), never inflating more than ``limit`` bytes."""
    out = bytearray()
    rest = data
    while True:
        if not rest.startswith(_GZIP_MAGIC):
            raise BodyError(400, "bad_gzip", "the body is not gzip data")
        inflater = zlib.decompressobj(_GZIP_WBITS)
        chunk = rest
        try:
            while True:
                piece = inflater.decompress(chunk, _INFLATE_STEP)
                out += piece
                if len(out) > limit:
                    raise BodyError(413, "payload_too_large", f"the body inflates to more than {limit} bytes")
                chunk = inflater.unconsumed_tail
                # An empty input with output still coming drains what zlib holds back, step by step.
                if inflater.eof or not (chunk or piece):
                    break
        except zlib.error as exc:
            raise BodyError(400, "bad_gzip", f"corrupt gzip data: {exc}") from exc
        if not inflater.eof:
            raise BodyError(400, "bad_gzip", "truncated gzip data")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def _parse_int(text: str) -> int | Unstorable:
    if len(text) > _MAX_INT_LITERAL:
        return Unstorable("an integer out of range")
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        return Unstorable("an integer out of range")
    return value


def _parse_float(text: str) -> float | Unstorable:
    value = float(text)
    if not math.isfinite(value):
        return Unstorable("a number out of range")
    return value


def _parse_constant(text: str) -> Unstorable:
    return Unstorable(f"a non-finite number ({text})")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        return DuplicateKeys(result)
    return result


def parse_json(data: bytes) -> Any:
    """Strict UTF-8 JSON; unstorable values are marked (see ``json_problem``), not refused here."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "bad_encoding", f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
            object_pairs_hook=_object,
        )
    except RecursionError as exc:
        raise BodyError(400, "bad_json", "the body is nested too deeply") from exc
    except ValueError as exc:
        raise BodyError(400, "bad_json", f"the body is not JSON: {exc}") from exc


def _string_problem(text: str) -> str | None:
    match = _BAD_CHARS.search(text)
    if match is None:
        return None
    return "a NUL character" if match.group() == "\x00" else "a lone UTF-16 surrogate"


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, shallow: bool = False) -> str | None:
    """The first reason ``value`` (as parsed by ``parse_json``) cannot be stored, or None if it can.

    ``shallow`` checks only the top object itself (its keys and immediate scalars), for an envelope whose
    items are judged one by one.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if depth > max_depth:
            return f"{where or 'the value'}: nested deeper than {max_depth} levels"
        if isinstance(item, Unstorable):
            return f"{where or 'the value'}: {item.reason}"
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return f"{where or 'the value'}: a string with {problem}"
        elif isinstance(item, dict):
            if isinstance(item, DuplicateKeys):
                return f"{where or 'the value'}: an object with a repeated key"
            if shallow and depth > 0:
                continue
            for key, child in item.items():
                problem = _string_problem(key)
                if problem:
                    return f"{where or 'the value'}: a key with {problem}"
                stack.append((child, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            if shallow and depth > 0:
                continue
            stack.extend((child, depth + 1, f"{where}[{index}]") for index, child in enumerate(item))
    return None


def dumps(value: Any) -> str:
    """Compact JSON for storage and answers (values already passed ``json_problem``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
