"""Logs: real signed tokens, bearer headers and secret values never reach the output, in text or JSON."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.cli import setup_logging as cli_setup_logging
from edge.control.logs import WITHHELD, RedactFilter, make_handler, redact, set_level, setup_logging
from tests.support.store import StoreKit, make_store

SYNC_TOKEN = "s3cr3t-sync-token-Zq9"  # an opaque bearer token, as the profile store hands out
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def store(tmp_path: Path) -> StoreKit:
    return make_store(tmp_path / "store", 1883)


@pytest.fixture
def token(store: StoreKit) -> str:
    signed = store.token("p-full")
    assert signed.startswith("eyJ") and signed.count(".") == 2
    return signed


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, restored as it was (pytest's own capture handlers included)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def tagged(token: str) -> str:
    return f"[jwt sha256:{hashlib.sha256(token.encode()).hexdigest()[:12]}]"


def refuse(token: str) -> None:
    raise ValueError(f"cloud refused Authorization: Bearer {SYNC_TOKEN} for {token}")


def emit(json_format: bool, token: str) -> str:
    """Log a check-in with its token and a cloud call with its bearer header through a real handler."""
    out = io.StringIO()
    logger = logging.getLogger(f"edge.test.logs.{json_format}")
    logger.handlers[:] = [make_handler(json_format=json_format, stream=out)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("check-in refused: %s", {"token": token, "zone": "cafe"})
        logger.warning("GET /v1/changes with headers %s", {"Authorization": f"Bearer {SYNC_TOKEN}"})
        logger.info("raw payload token=%s password=%s secret=%s", token, "hunter2", "xyzzy")
        try:
            refuse(token)
        except ValueError:
            logger.exception("push failed")
    finally:
        logger.handlers.clear()
    return out.getvalue()


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
def test_tokens_and_bearer_headers_are_redacted(json_format: bool, token: str) -> None:
    output = emit(json_format, token)
    assert token not in output
    for part in token.split("."):
        assert part not in output  # not even one segment (the payload names the shopper)
    assert SYNC_TOKEN not in output
    assert "hunter2" not in output and "xyzzy" not in output
    assert output.count(tagged(token)) == 2  # a dict value and a key=value
    assert WITHHELD in output  # the exception's message, which carried the token, is not shown at all
    assert "Bearer [redacted]" in output
    assert "password=[redacted]" in output and "secret=[redacted]" in output
    assert "token=" + tagged(token) in output


def test_json_lines_are_valid_json_with_the_fields(token: str) -> None:
    lines = emit(True, token).splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 4
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= entry.keys()
        assert TS.match(entry["ts"]), entry["ts"]
        assert entry["logger"] == "edge.test.logs.True"
    assert [entry["level"] for entry in entries] == ["INFO", "WARNING", "INFO", "ERROR"]
    assert "exception" not in entries[0]
    failure = entries[3]
    assert failure["message"] == "push failed"
    assert "Traceback" in failure["exception"] and "ValueError" in failure["exception"]
    assert WITHHELD in failure["exception"] and "in refuse" in failure["exception"]
    assert tagged(token) not in failure["exception"] and SYNC_TOKEN not in failure["exception"]


def test_setup_logging_redacts_every_logger_through_the_root(
    root_logging: logging.Logger, token: str
) -> None:
    out = io.StringIO()
    setup_logging("INFO", json_format=True, stream=out)
    assert cli_setup_logging is setup_logging  # the CLI uses this set-up
    (handler,) = root_logging.handlers
    assert any(isinstance(f, RedactFilter) for f in handler.filters)
    logging.getLogger("aiohttp.client").info("Authorization: Bearer %s", token)
    logging.getLogger("edge.sync").debug("below the level: %s", token)
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["message"] == f"Authorization: Bearer {tagged(token)}"


def test_set_level_changes_the_root_level_live(root_logging: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("WARNING", json_format=False, stream=out)
    log = logging.getLogger("edge.test.level")
    log.info("hidden")
    set_level("debug")
    assert root_logging.level == logging.DEBUG
    log.info("shown")
    set_level(logging.ERROR)
    log.warning("hidden again")
    with pytest.raises(ValueError, match="unknown log level"):
        set_level("LOUD")
    assert root_logging.level == logging.ERROR
    assert out.getvalue().count("hidden") == 0
    assert "INFO edge.test.level: shown" in out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://cloud/v1/pull?since=4&token=abc123&limit=5",
            "https://cloud/v1/pull?since=4&token=[redacted]&limit=5",
        ),
        ("mqtt_password='p@ss w' next", "mqtt_password='[redacted]' next"),
        ('{"sync_token": "abc\\"def", "n": 1}', '{"sync_token": "[redacted]", "n": 1}'),
        ("{'client_secret': 'abc'}", "{'client_secret': '[redacted]'}"),
        ("authorization: bearer abc.def", "authorization: bearer [redacted]"),
        # ordinary words stay: the fingerprint lines, counts, key names without values
        ("token 1a2b3c4d was already claimed on disk", "token 1a2b3c4d was already claimed on disk"),
        ("tokens=12 rejected=3", "tokens=12 rejected=3"),
        ("eyJ alone is no token", "eyJ alone is no token"),
    ],
)
def test_redact_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_record_that_cannot_format_passes_unchanged() -> None:
    record = logging.LogRecord("edge", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactFilter().filter(record)
    assert record.msg == "%d items" and record.args == ("many",)
