"""The allow-list of a config push, the pure part: every key off it refused with its path, files only by name
in the store's folder (and never a hint about the disk), cameras only on the LAN, DEBUG only from the file;
and the schema itself: every number bounded, every key either pushable or refused with a reason."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config.push import (
    LIST,
    PUSHABLE,
    PushLimits,
    PushRefused,
    Refusal,
    is_pushable,
    on_lan,
    parts,
    refused_because,
    vet_overlay,
)
from edge.config.reference import keys

FILES = Path("/srv/edge/incoming")
LIMITS = PushLimits(files_dir=FILES, camera_hosts=frozenset({"cam-cafe.local", "127.0.0.1"}))
PIN = "ab" * 32


def _refused(overlay: dict[str, Any], limits: PushLimits = LIMITS) -> PushRefused:
    with pytest.raises(PushRefused) as refused:
        vet_overlay(overlay, limits)
    return refused.value


# The pushes of issue 12 and their kin: each refused as a key, naming the key path only.
@pytest.mark.parametrize(
    ("overlay", "key"),
    [
        ({"mqtt": {"host": "203.0.113.9", "port": 1883}}, "mqtt.host, mqtt.port"),
        ({"mqtt": {"password_file": "/root/.ssh/id_ed25519"}}, "mqtt.password_file"),
        ({"mqtt": {"password_env": "HOME"}}, "mqtt.password_env"),
        ({"mqtt": {"tls": {"insecure": True}}}, "mqtt.tls.insecure"),
        (
            {"sync": {"enabled": True, "url": "http://203.0.113.9", "token_file": "/etc/shadow"}},
            "sync.enabled, sync.url, sync.token_file",
        ),
        ({"health": {"metrics_host": "0.0.0.0"}}, "health.metrics_host"),
        ({"health": {"metrics_port": 80}}, "health.metrics_port"),
        ({"dashboard": {"password_file": "/etc/shadow"}}, "dashboard.password_file"),
        ({"dashboard": {"password_env": "HOME"}}, "dashboard.password_env"),
        ({"dashboard": {"bind": "0.0.0.0", "enabled": True}}, "dashboard.bind, dashboard.enabled"),
        ({"identity": {"max_token_lifetime_s": 1e9}}, "identity.max_token_lifetime_s"),
        ({"identity": {"public_key_files": ["/tmp/attacker.pem"]}}, "identity.public_key_files"),
        ({"ledger": {"retention_days": 100000}}, "ledger.retention_days"),
        ({"ledger": {"path": "/tmp/elsewhere.sqlite"}}, "ledger.path"),
        ({"store": {"id": "s9"}}, "store.id"),
        ({"control": {"enabled": False}}, "control.enabled"),
        ({"ble": {"eid_keys_file": "/etc/passwd"}}, "ble.eid_keys_file"),
        ({"ble": {"enabled": True}}, "ble.enabled"),
        (
            {"cameras": [{"id": "c", "source": "0", "zone": "a", "detector_model": "/x.onnx"}]},
            "cameras.0.detector_model",
        ),
        ({"logging": {"json_format": True}}, "logging.json_format"),
        ({"colour": "blue"}, "colour"),
        ({"decisions": {"policy": {"epsilon": 0.1}}, "mqtt": {}}, "mqtt"),
    ],
)
def test_keys_off_the_allow_list_are_refused_by_path(overlay: dict[str, Any], key: str) -> None:
    refused = _refused(overlay)
    assert refused.reason is Refusal.KEY
    assert refused.detail == f"{key}: set only in the store's own file"


def test_many_keys_are_listed_up_to_a_bound() -> None:
    refused = _refused({"mqtt": {f"k{i}": i for i in range(9)}})
    assert refused.detail.startswith("mqtt.k0, mqtt.k1, mqtt.k2, mqtt.k3, mqtt.k4 (and 4 more)")
    long = _refused({"x" * 500: 1})
    assert len(long.detail) < 120


@pytest.mark.parametrize(
    "name",
    [
        "/root/.ssh/id_rsa",
        "/etc/hostname",
        "../../etc/passwd",
        "sub/offers.toml",
        "..",
        ".hidden.onnx",
        "~root",
        "offers.toml\n",
        "",
        3,
        None,
    ],
)
def test_a_pushed_file_is_a_plain_name_and_the_report_says_nothing_of_the_disk(name: object) -> None:
    refused = _refused({"decisions": {"offers_file": name}})
    assert refused.reason is Refusal.VALUE
    assert (
        refused.detail
        == "decisions.offers_file: a push names a file only by its plain name in control.files_dir"
    )


def test_files_are_refused_when_the_store_names_no_folder() -> None:
    refused = _refused({"decisions": {"offers_file": "offers.toml"}}, PushLimits())
    assert refused.reason is Refusal.VALUE
    assert "sets no control.files_dir" in refused.detail


def test_a_pushed_model_is_pinned_and_a_pin_is_never_removed() -> None:
    assert "model_sha256" in _refused({"decisions": {"model": "m.onnx"}}).detail
    assert "model_sha256" in _refused({"decisions": {"manifest": "m.json", "model_sha256": None}}).detail
    assert "not remove" in _refused({"decisions": {"model_sha256": None}}).detail


def test_an_allowed_push_comes_back_with_its_files_in_the_folder() -> None:
    overlay = {
        "decisions": {
            "model": "offers-2026.12.1.onnx",
            "manifest": "offers-2026.12.1.json",
            "model_sha256": PIN,
            "offers_file": "offers.toml",
            "policy": {"epsilon": 0.1, "tz": "Europe/Berlin"},
        },
        "zones": [{"id": "cafe"}],
        "displays": [{"id": "d", "zone": "cafe", "fallback": {"data": {"url": "https://cdn.example/x.png"}}}],
        "presence": {"checkin_timeout_s": 60},
        "ble": {"zone": "cafe", "presence": {"enter_rssi_dbm": -70}, "espresense": {"rooms": {"r": "cafe"}}},
        "cameras": [{"id": "c", "source": "rtsp://192.168.1.20/stream", "zone": "cafe", "qr_fps": 2}],
        "health": {"interval_s": 30},
        "logging": {"level": "WARNING"},
    }
    resolved = vet_overlay(overlay, LIMITS)
    assert resolved["decisions"]["model"] == str(FILES / "offers-2026.12.1.onnx")
    assert resolved["decisions"]["manifest"] == str(FILES / "offers-2026.12.1.json")
    assert resolved["decisions"]["offers_file"] == str(FILES / "offers.toml")
    assert overlay["decisions"]["model"] == "offers-2026.12.1.onnx"  # a copy: the snapshot keeps the name
    assert {k: v for k, v in resolved.items() if k != "decisions"} == {
        k: v for k, v in overlay.items() if k != "decisions"
    }


@pytest.mark.parametrize(
    "source",
    [
        "0",
        "3",
        "rtsp://10.1.2.3/stream",
        "rtsp://user:pw@172.16.9.9:8554/live",
        "rtsps://192.168.0.10/s",
        "http://169.254.7.7/mjpeg",
        "http://[fe80::1]/mjpeg",
        "http://[fd00::5]:8080/mjpeg",
        "http://[::ffff:10.0.0.1]/mjpeg",
        "rtsp://CAM-CAFE.local/stream",  # listed in the store's file
        "rtsp://127.0.0.1:8554/relay",  # listed in the store's file
    ],
)
def test_cameras_on_the_lan(source: str) -> None:
    assert on_lan(source, LIMITS)
    vet_overlay({"cameras": [{"id": "c", "source": source, "zone": "cafe"}]}, LIMITS)


@pytest.mark.parametrize(
    "source",
    [
        "rtsp://203.0.113.7/stream",
        "http://8.8.8.8/x",
        "http://127.0.0.1/x",  # loopback is the gateway's own services, unless the file lists it
        "http://[::1]/x",
        "http://localhost:9108/metrics",
        "rtsp://cam.example.com/stream",  # a name the file does not list
        "http://10.0.0.1\\@evil.example/",  # parsers disagree on the host: refused
        "http://10.0.0.1 @evil.example/",
        "rtsp://10.0.0.1/stream\n",
        "http://[10.0.0.1/x",
        "file:///etc/passwd",
        "/etc/passwd",
        "/dev/video0",
        "video.avi",
        "٣",  # a digit, but not a V4L2 index
        "gopher://10.0.0.1/",
    ],
)
def test_cameras_elsewhere_are_refused(source: str) -> None:
    limits = PushLimits(files_dir=FILES, camera_hosts=frozenset({"cam-cafe.local"}))
    assert not on_lan(source, limits)
    refused = _refused(
        {"cameras": [{"id": "c", "zone": "a"}, {"id": "d", "source": source, "zone": "a"}]}, limits
    )
    assert refused.reason is Refusal.VALUE
    assert refused.detail.startswith(
        "cameras.1.source: a push may give only a V4L2 index or a URL on the store's LAN"
    )
    assert source not in refused.detail


def test_debug_logging_only_from_the_file() -> None:
    refused = _refused({"logging": {"level": "DEBUG"}})
    assert refused.reason is Refusal.VALUE and refused.detail.startswith("logging.level: DEBUG only")
    for level in ("INFO", "WARNING", "ERROR", "LOUD"):  # LOUD is the schema's to refuse
        vet_overlay({"logging": {"level": level}}, LIMITS)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=20,
)
_KEYS = st.sampled_from(["decisions", "policy", "model", "cameras", "source", "mqtt", "host", "zones", "id"])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        _KEYS | st.text(max_size=6), st.dictionaries(_KEYS, _JSON, max_size=3) | _JSON, max_size=4
    )
)
def test_any_overlay_gives_a_verdict_and_what_passes_is_on_the_list(overlay: dict[str, Any]) -> None:
    try:
        resolved = vet_overlay(overlay, LIMITS)
    except PushRefused:
        return  # a verdict (its reason is a Refusal by type); what matters is what gets through
    for path in _container_paths(resolved, ()):
        assert is_pushable(path) or any(
            allowed[: len(path)] == path for allowed in (parts(rule.path) for rule in PUSHABLE)
        ), path


def _container_paths(value: object, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every key path in ``value`` (list items as ``[]``)."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _container_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for item in value:
            found += _container_paths(item, (*path, LIST))
    return found


def test_the_allow_list_names_keys_of_the_schema_and_every_key_has_an_answer() -> None:
    schema = {key.path for key in keys()}
    for rule in PUSHABLE:
        assert parts(rule.path) in schema, rule.path
    for key in keys():
        if key.table is None:
            assert is_pushable(key.path) or refused_because(key.path), key.path


def _numeric(annotation: Any) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(arg in (int, float) for arg in args)


def test_every_number_in_the_schema_has_hard_bounds() -> None:
    unbounded = []
    for key in keys():
        if not _numeric(key.field.annotation):
            continue
        kinds = {type(item) for item in key.field.metadata}
        lower = kinds & {annotated_types.Ge, annotated_types.Gt}
        upper = kinds & {annotated_types.Le, annotated_types.Lt}
        if not (lower and upper):
            unbounded.append(".".join(key.path))
    assert unbounded == []
