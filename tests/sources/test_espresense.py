import json

from hypothesis import given
from hypothesis import strategies as st

from edge.sources.espresense import (
    ANONYMOUS,
    RSSI_MAX,
    RSSI_MIN,
    RemoteBeacon,
    RemoteEid,
    loggable_topic,
    parse_report,
    parse_topic,
)
from edge.sources.payloads import Rejected
from edge.sources.rejections import Kind, reasons_of

UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


def report(device_id: str, room: str = "kitchen", **body: object) -> tuple[str, bytes]:
    payload = {"id": device_id, "rssi": -67, "distance": 1.9, **body}
    return f"espresense/devices/{device_id}/{room}", json.dumps(payload).encode()


def test_ibeacon_and_eddystone_uid_become_beacon_keys() -> None:
    assert parse_report(*report(f"iBeacon:{UUID}-1-2")) == RemoteBeacon("kitchen", f"ibeacon:{UUID}:1:2", -67)
    assert parse_report(*report(f"iBeacon:{UUID.upper()}-65535-0")) == RemoteBeacon(
        "kitchen", f"ibeacon:{UUID}:65535:0", -67
    )
    ns, inst = "edd1ebeac04e5defa017", "0123456789ab"
    assert parse_report(*report(f"eddy:{ns}-{inst}")) == RemoteBeacon(
        "kitchen", f"eddystone-uid:{ns}:{inst}", -67
    )


def test_eid_reports_carry_the_raw_eid() -> None:
    assert parse_report(*report("eid:0011223344556677", rssi=-71.4)) == RemoteEid(
        "kitchen", bytes.fromhex("0011223344556677"), -71
    )
    assert parse_report(*report("eid:0011")) == Rejected("bad_eid")


def test_everything_else_is_anonymous_and_dropped() -> None:
    for device_id in (
        "aa:bb:cc:dd:ee:ff",
        "name:johns-iphone",
        "apple:1005:9-26",
        "md:0075:12",
        f"iBeacon:{UUID}-x-2",
    ):
        assert parse_report(*report(device_id)) is ANONYMOUS, device_id


def test_bad_reports() -> None:
    topic, _ = report("eid:0011223344556677")
    assert parse_report(topic, b"\xff") == Rejected("not_json")
    assert parse_report(topic, b"[]") == Rejected("not_object")
    assert parse_report(topic, b'{"rssi": "loud"}') == Rejected("bad_rssi")
    assert parse_report(topic, b'{"rssi": -128}') == Rejected("bad_rssi")
    assert parse_report(topic, b'{"rssi": NaN}') == Rejected("bad_rssi")
    assert parse_report("espresense/rooms/x", b"{}") == Rejected("bad_topic")
    assert parse_topic("espresense/devices/a/b/c", "espresense") is None
    assert parse_topic("other/devices/a/b", "espresense") is None


# Mostly well-formed topics (ours, others', odd ids) with JSON bodies, so the property reaches the sightings.
device_ids = st.sampled_from(
    [f"iBeacon:{UUID}-1-2", "eddy:edd1ebeac04e5defa017-0123456789ab", "eid:0011223344556677", "eid:00", "a:b"]
) | st.text(st.characters(exclude_characters="/+#"), min_size=1, max_size=40)
topics = st.builds(
    "{}/{}/{}".format,
    st.sampled_from(["espresense/devices"] * 3 + ["espresense/rooms"]),
    device_ids,
    st.sampled_from(["kitchen", "hall", "kitchen", "a/b"]),
) | st.text(max_size=80)
rssis = st.sampled_from([-67, -67.5, -127, 20, -128, 21, True, "loud", None]) | st.floats() | st.integers()
payloads = st.builds(lambda rssi: json.dumps({"rssi": rssi, "distance": 1.9}).encode(), rssis) | st.binary(
    max_size=200
)


@given(topics, payloads)
def test_any_report_is_a_sighting_anonymous_or_a_documented_refusal(topic: str, payload: bytes) -> None:
    parsed = parse_report(topic, payload)
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.ESPRESENSE), parsed.reason
    elif isinstance(parsed, RemoteBeacon | RemoteEid):
        assert topic == f"espresense/devices/{topic.split('/')[2]}/{parsed.room}"
        assert RSSI_MIN <= parsed.rssi <= RSSI_MAX
        assert isinstance(parsed, RemoteBeacon) or len(parsed.eid) == 8
    else:
        assert parsed is ANONYMOUS


def test_loggable_topics_never_show_the_device() -> None:
    rooms = {"kitchen"}
    mac = "aa:bb:cc:dd:ee:ff"
    assert loggable_topic(f"espresense/devices/{mac}/kitchen", "espresense", rooms) == (
        "espresense/devices/<device>/kitchen"
    )
    # a room the store did not configure may be anything a sender chose: redacted too
    for topic in (f"espresense/devices/kitchen/{mac}", f"espresense/devices/{mac}/a/b", f"x/{mac}"):
        shown = loggable_topic(topic, "espresense", rooms)
        assert mac not in shown
        assert shown == "espresense/devices/<device>/<device>"


@given(st.text(max_size=40), st.text(max_size=40))
def test_loggable_topic_keeps_nothing_but_configured_rooms(device: str, room: str) -> None:
    shown = loggable_topic(f"espresense/devices/{device}/{room}", "espresense", {"kitchen"})
    assert shown.removeprefix("espresense/devices/<device>/") in {"kitchen", "<device>"}
