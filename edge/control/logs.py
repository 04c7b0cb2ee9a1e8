"""Logging set-up: text or one JSON object per line on the standard streams (journald keeps both), with
secrets redacted on the way out, and the root level changeable live (a configuration push calls ``set_level``).

Redaction is a filter on the root handler, so it covers every logger of the process, the exception text and
the stack included (docs/metrics.md, "Logs"):

* a compact JWS/JWT (three base64url parts, the first starting ``eyJ``) becomes ``[jwt sha256:<12 hex>]``:
  operators can still tell two lines about the same token apart (its first 8 hex are the ``fingerprint``
  other log lines print), and learn nothing they could replay;
* ``Bearer <x>`` becomes ``Bearer [redacted]`` (``Bearer [jwt sha256:...]`` when <x> is a JWT);
* ``password=``, ``token=``, ``secret=`` (and ``sync_token=``, ``"password": "..."`` and the like) keep their
  key and lose their value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from typing import Any, Final, TextIO

from edge.clock import iso_utc

REDACTED: Final = "[redacted]"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JWT_HASH_CHARS: Final = 12

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"\b(Bearer\s+)(?!\[jwt )[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SENSITIVE = r"[A-Za-z0-9_-]*(?:password|passwd|token|secret)"
# key=value (query strings, command lines, URLs): a quoted value to its closing quote, a bare one to whitespace,
# &, comma, semicolon or a quote.
_ASSIGNED = re.compile(
    rf"""\b({_SENSITIVE})=(?:(["'])(?!\[jwt ).*?(?<!\\)\2|(?!\[jwt )[^\s&,;'"]+)""", re.IGNORECASE
)
# "key": "value" and 'key': 'value' (JSON bodies, Python reprs).
_QUOTED = re.compile(rf"""(["'])({_SENSITIVE})\1(\s*:\s*)(["'])(?!\[jwt ).*?(?<!\\)\4""", re.IGNORECASE)


def _jwt_hash(match: re.Match[str]) -> str:
    digest = hashlib.sha256(match.group(0).encode("utf-8", "surrogatepass")).hexdigest()
    return f"[jwt sha256:{digest[:JWT_HASH_CHARS]}]"


def redact(text: str) -> str:
    """``text`` with tokens, credentials and secret values replaced (see the module's docstring)."""
    if "eyJ" in text:
        text = _JWT.sub(_jwt_hash, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}={m.group(2) or ''}{REDACTED}{m.group(2) or ''}", text)
    return _QUOTED.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{REDACTED}{m.group(4)}", text
    )


class RedactFilter(logging.Filter):
    """Rewrites each record in place: the formatted message, the exception text and the stack, redacted.

    Never drops a record, and never raises (a record whose arguments do not format is left to the handler).
    """

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - the handler reports a record that cannot format; logging goes on
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, message, and exception/stack when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_handler(*, json_format: bool, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the chosen format and the redaction filter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactFilter())
    return handler


def setup_logging(level: str, *, json_format: bool, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers by one redacting stream handler, at ``level``.

    stderr by default: systemd hands both streams to journald, and stdout stays for the commands' output.
    """
    root = logging.getLogger()
    root.handlers[:] = [make_handler(json_format=json_format, stream=stream)]
    root.setLevel(level)


def set_level(level: str | int) -> None:
    """Change the root level now (a configuration push); a bad name raises ValueError, nothing changes."""
    if isinstance(level, int):
        logging.getLogger().setLevel(level)
        return
    value = logging.getLevelNamesMapping().get(level.upper())
    if value is None:
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(value)
