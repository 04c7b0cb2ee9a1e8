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

And personal data never reaches a log line (docs/privacy.md "Logs"):

* loggers other than the gateway's own (``edge.*``) never pass below INFO, whatever the gateway's level: at
  DEBUG, aiosqlite logs every SQL statement with its parameters (consent rows, profiles), bleak device
  addresses, the MQTT client topics. A filter on the handler holds it for any library, and the known ones are
  set to INFO so they do not even build the records;
* a traceback keeps its frames and its exception types, but the message of an exception that may carry
  input (a ``ValueError``, ``KeyError``, a validation error...) is withheld: only errors about the system
  (``OSError`` and its kin, SQLite's) keep theirs;
* our own lines name a shopper only as ``shopper_ref(id)``: a keyed hash, the key random per process, so
  lines of one run can be told apart and nothing leads back to the shopper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import traceback
from typing import Any, Final, TextIO

from edge.clock import iso_utc

REDACTED: Final = "[redacted]"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JWT_HASH_CHARS: Final = 12
OWN_LOGGER: Final = "edge"
# What a library may log at least (an operator's DEBUG is for the gateway's own lines).
LIBRARY_FLOOR: Final = logging.INFO
LIBRARIES: Final = (
    "aiosqlite",
    "asyncio",
    "aiomqtt",
    "paho",
    "bleak",
    "dbus_fast",
    "aiohttp",
    "urllib3",
    "profilestore",
)
WITHHELD: Final = "[message withheld: it may carry input]"
# Exceptions about the system, not about what someone sent: their messages stay (paths, errno, SQLite's text).
_SYSTEM_ERRORS: Final = (OSError, MemoryError, RecursionError)
_SHOPPER_KEY: Final = secrets.token_bytes(16)

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


def shopper_ref(shopper_id: str) -> str:
    """How a log line names a shopper: ``shopper#`` and 10 hex of a keyed hash (the key random per process)."""
    digest = hmac.new(_SHOPPER_KEY, shopper_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"shopper#{digest[:10]}"


def _keeps_message(error: BaseException) -> bool:
    return isinstance(error, _SYSTEM_ERRORS) or type(error).__module__ == "sqlite3"


def format_exception_safely(error: BaseException) -> str:
    """The traceback of ``error`` (and of its causes) with the messages that may carry input withheld."""
    return "".join(_exception_lines(error, set())).rstrip("\n")


def _exception_lines(error: BaseException, seen: set[int]) -> list[str]:
    seen.add(id(error))
    lines: list[str] = []
    cause, context = error.__cause__, error.__context__
    if cause is not None and id(cause) not in seen:
        lines += _exception_lines(cause, seen)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context is not None and not error.__suppress_context__ and id(context) not in seen:
        lines += _exception_lines(context, seen)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if error.__traceback__ is not None:
        lines.append("Traceback (most recent call last):\n")
        lines += traceback.format_tb(error.__traceback__)
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ in ("builtins", "__main__")
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    message = str(error) if _keeps_message(error) else WITHHELD
    lines.append(f"{name}: {message}\n")
    return lines


class LibraryFloor(logging.Filter):
    """Drops a library's records below ``LIBRARY_FLOOR``; the gateway's own pass at every level."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return record.levelno >= LIBRARY_FLOOR or name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


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
            error = record.exc_info[1]
            record.exc_text = (
                format_exception_safely(error)
                if error is not None
                else self._exceptions.formatException(record.exc_info)
            )
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
    handler.addFilter(LibraryFloor())
    handler.addFilter(RedactFilter())
    return handler


def setup_logging(level: str, *, json_format: bool, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers by one redacting stream handler, at ``level``.

    stderr by default: systemd hands both streams to journald, and stdout stays for the commands' output.
    """
    root = logging.getLogger()
    root.handlers[:] = [make_handler(json_format=json_format, stream=stream)]
    set_level(level)


def set_level(level: str | int) -> None:
    """Change the root level now (a configuration push); a bad name raises ValueError, nothing changes."""
    value = level if isinstance(level, int) else logging.getLevelNamesMapping().get(level.upper())
    if value is None:
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(value)
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(max(value, LIBRARY_FLOOR))
