"""The cloud's answers: pages, push results and profiles, good and bad."""

from __future__ import annotations

import base64
from collections.abc import Callable
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.events import Purpose
from edge.identity.keys import generate_keypair
from edge.sync.parse import (
    AnswerError,
    FetchedProfile,
    Page,
    PushResult,
    parse_page,
    parse_profile,
    parse_push_result,
    parse_retry_after,
)
from edge.sync.wire import ChangeKind

AT = "2026-11-01T10:00:00Z"


def change(seq: int, kind: str, id_: str = "p-1", op: str = "upsert", **data: object) -> dict[str, object]:
    return {"seq": seq, "kind": kind, "id": id_, "op": op, "at": AT, "data": data}


def page(*changes: dict[str, object], cursor: str = "9", more: bool = False) -> dict[str, object]:
    return {"changes": list(changes), "cursor": cursor, "more": more}


def test_every_kind_is_normalised() -> None:
    _, public_pem = generate_keypair()
    key = bytes(range(16))
    parsed = parse_page(
        page(
            change(1, "profile", profile={"visits": 1, "name": "Ana Example", "segment": "new"}),
            change(2, "consent", purpose="personalization", granted=True, at=AT, source="app"),
            change(3, "eid_key", identity_key=base64.b64encode(key).decode(), rotation_exponent=10),
            change(4, "token_key", "kid-1", public_key_pem=public_pem.decode()),
            change(5, "offer", "o-1", id="o-1", title="t", category="coffee", value=2.0),
            change(6, "inventory", "o-1", available=False, quantity=0),
            change(7, "erasure", "p-2"),
            change(8, "offer", "o-2", op="delete"),
            change(9, "order", "ord-1", shopper_id="p-1", reference="A-1042", counter="Desk 1", ready_at=AT),
        )
    )
    assert [c.kind for c in parsed.changes] == [
        ChangeKind.PROFILE,
        ChangeKind.CONSENT,
        ChangeKind.EID_KEY,
        ChangeKind.TOKEN_KEY,
        ChangeKind.OFFER,
        ChangeKind.INVENTORY,
        ChangeKind.ERASURE,
        ChangeKind.OFFER,
        ChangeKind.ORDER,
    ]
    assert parsed.changes[0].data == {"profile": {"visits": 1}}  # a name or a segment is never kept
    consent = parsed.changes[1].data
    assert consent["purpose"] is Purpose.PERSONALIZATION
    assert consent["granted"] is True
    assert consent["source"] == "app"
    assert parsed.changes[2].data == {"identity_key": key, "rotation_exponent": 10, "clock_offset_s": 0}
    assert parsed.changes[4].data["offer"]["id"] == "o-1"
    assert parsed.changes[7].data == {}
    assert parsed.changes[8].data == {
        "shopper_id": "p-1",
        "reference": "A-1042",
        "counter": "Desk 1",
        "ready_wall": parsed.changes[8].data["ready_wall"],
    }
    assert isinstance(parsed.changes[8].data["ready_wall"], float)
    assert parsed.cursor == "9"
    assert parsed.last_seq == 9
    assert not parsed.rejected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (change(1, "coupon"), "unknown_kind"),
        (change(1, "consent", purpose="telepathy", granted=True, at=AT), "unknown_purpose"),
        (change(1, "consent", purpose="measurement", granted="yes", at=AT), "bad_data"),
        (change(1, "consent", op="delete"), "unknown_purpose"),  # a consent delete names its purpose
        (change(1, "erasure", op="delete"), "bad_op"),
        (change(1, "profile", profile=[1, 2]), "bad_data"),
        (change(1, "eid_key", identity_key="AAAA", rotation_exponent=1), "bad_eid_key"),
        (
            change(1, "eid_key", identity_key=base64.b64encode(b"x" * 16).decode(), rotation_exponent=99),
            "bad_eid_key",
        ),
        (change(1, "token_key", public_key_pem="-----BEGIN PUBLIC KEY-----\nnope\n"), "bad_token_key"),
        (change(1, "offer", "o", id="o", title="t", category="cars", value=1), "bad_offer"),
        (change(1, "offer", "o", id="other", title="t", category="coffee", value=1), "bad_offer"),
        (change(1, "inventory", "o", available=True, quantity=-1), "bad_inventory"),
        (change(1, "order", "o", shopper_id="", reference="A", counter="D", ready_at=AT), "bad_order"),
        (change(1, "order", "o", shopper_id="p", reference="A" * 33, counter="D", ready_at=AT), "bad_order"),
        (change(1, "order", "o", shopper_id="p", reference="A", counter="D\n", ready_at=AT), "bad_order"),
        (change(1, "order", "o", shopper_id="p", reference="A", counter="D", ready_at="soon"), "bad_time"),
        ({**change(1, "profile", profile={}), "at": "yesterday"}, "bad_time"),
        ({**change(1, "profile", profile={}), "id": ""}, "bad_id"),
        ({**change(1, "profile", profile={}), "id": "x" * 500}, "bad_id"),
    ],
)
def test_one_bad_change_is_skipped_and_counted_the_rest_applies(bad: dict[str, object], reason: str) -> None:
    bad = {**bad, "seq": 2}
    parsed = parse_page(page(change(1, "profile", profile={}), bad, change(3, "erasure", "p-9")))
    assert [c.seq for c in parsed.changes] == [1, 3]
    assert parsed.rejected == {reason: 1}
    assert parsed.last_seq == 3


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {"changes": [], "more": False},
        {"changes": {}, "cursor": "1"},
        {"changes": [], "cursor": ""},
        {"changes": [], "cursor": "1", "more": "no"},
        page(change(2, "profile", profile={}), change(2, "profile", profile={})),
        page(change(3, "profile", profile={}), change(1, "profile", profile={})),
        page({"kind": "profile"}),
        page({"seq": True, "kind": "profile"}),
    ],
)
def test_a_broken_envelope_is_refused_whole(document: object) -> None:
    with pytest.raises(AnswerError):
        parse_page(document)


IDS = [f"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5{n}" for n in range(4)]


def test_push_result_must_account_for_every_event() -> None:
    result = parse_push_result(
        {
            "accepted": 2,
            "duplicates": 1,
            "rejected": [{"index": 3, "id": IDS[3].upper(), "reason": "bad at"}],
        },
        IDS,
    )
    assert (result.accepted, result.duplicates, result.rejected) == (2, 1, [(3, "bad at")])
    for bad in (
        {"accepted": 2, "duplicates": 1},
        {"accepted": 4, "duplicates": 0, "rejected": [{"index": 9}]},
        {"accepted": "4", "duplicates": 0, "rejected": []},
        {"accepted": True, "duplicates": 3, "rejected": []},
        [],
    ):
        with pytest.raises(AnswerError):
            parse_push_result(bad, IDS)


@pytest.mark.parametrize(
    "rejection",
    [
        {"index": 0, "reason": "no id"},  # a verdict must name the event it gives up
        {"index": 0, "id": None, "reason": "null id"},
        {"index": 0, "id": IDS[1], "reason": "the id of another position"},
        {"index": 0, "id": IDS[0]},  # no reason
        {"index": 0, "id": IDS[0], "reason": "  "},
    ],
)
def test_a_rejection_that_does_not_name_its_event_and_reason_is_a_garbled_answer(rejection: dict) -> None:
    with pytest.raises(AnswerError):
        parse_push_result({"accepted": 3, "duplicates": 0, "rejected": [rejection]}, IDS)
    twice = {"index": 1, "id": IDS[1], "reason": "x"}
    with pytest.raises(AnswerError):
        parse_push_result({"accepted": 2, "duplicates": 0, "rejected": [twice, twice]}, IDS)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0  # a date passed: now
    for bad in (None, "", "-5", "soon", "1.5", "Mon, 99 Foo 2026"):
        assert parse_retry_after(bad, now) is None


def test_profile_answer() -> None:
    fetched = parse_profile(
        {
            "shopper_id": "p-1",
            "profile": {"visits": 3, "segment": "new", "name": "Ana Example", "email": "ana@example.org"},
            "consents": {
                "personalization": {"granted": True, "at": AT, "source": "app"},
                "future_purpose": {"granted": True, "at": AT},
            },
            "eid_key": None,
        },
        "p-1",
    )
    assert fetched.profile == {"visits": 3}  # only what the gateway reads is kept
    assert [(p, g) for p, g, _, _ in fetched.consents] == [(Purpose.PERSONALIZATION, True)]
    with pytest.raises(AnswerError):
        parse_profile({"shopper_id": "p-2", "profile": {}}, "p-1")
    with pytest.raises(AnswerError):
        parse_profile({"shopper_id": "p-1", "profile": "x"}, "p-1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


# The counter labels of a pulled change refused one by one (sync.pull.rejected in gateway/health).
CHANGE_REASONS = frozenset(
    {
        "bad_data",
        "bad_eid_key",
        "bad_id",
        "bad_inventory",
        "bad_offer",
        "bad_op",
        "bad_order",
        "bad_time",
        "bad_token_key",
        "bad_weather",
        "unknown_kind",
        "unknown_purpose",
    }
)


def answer_or_reason(parse: Callable[[object], object], document: object, reason: str) -> object | None:
    """What ``parse`` makes of ``document``, or None when it refuses it as a whole, for ``reason`` only."""
    try:
        return parse(document)
    except AnswerError as refused:
        refusal = refused
    assert refusal.reason == reason, refusal
    return None


@given(json_values)
def test_every_answer_is_parsed_within_the_contract_or_refused_whole(document: object) -> None:
    page = answer_or_reason(parse_page, document, "bad_page")
    if page is not None:
        assert isinstance(page, Page) and isinstance(document, dict)
        assert 0 < len(page.cursor) <= 256 and page.cursor.isprintable()
        assert len(page.changes) + page.rejected.total() == len(document["changes"])
        assert set(page.rejected) <= CHANGE_REASONS
    pushed = answer_or_reason(lambda d: parse_push_result(d, IDS[:3]), document, "bad_push_answer")
    if pushed is not None:
        assert isinstance(pushed, PushResult)
        assert pushed.accepted + pushed.duplicates + len(pushed.rejected) == 3
        assert len({index for index, _ in pushed.rejected}) == len(pushed.rejected)
    profile = answer_or_reason(lambda d: parse_profile(d, "p-1"), document, "bad_profile")
    if profile is not None:
        assert isinstance(profile, FetchedProfile)
        assert profile.shopper_id == "p-1"


# Valid changes of each kind, one field then replaced by anything: so the property reaches each kind's own
# checks and sees changes taken (with an arbitrary seq, nearly every example stops at the envelope's).
VALID_CHANGES = [
    change(1, "profile", profile={"visits": 1}),
    change(1, "consent", purpose="personalization", granted=True, at=AT, source="app"),
    change(1, "eid_key", identity_key=base64.b64encode(bytes(range(16))).decode(), rotation_exponent=10),
    change(1, "offer", "o-1", id="o-1", title="t", category="coffee", value=2.0),
    change(1, "inventory", "o-1", available=False, quantity=0),
    change(1, "order", "ord-1", shopper_id="p-1", reference="A-1", counter="Desk", ready_at=AT),
    change(1, "erasure", "p-2"),
    change(1, "offer", "o-2", op="delete"),
]
near_valid_changes = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from(VALID_CHANGES),
    st.dictionaries(st.sampled_from(["kind", "id", "op", "at", "data"]), json_values, max_size=1),
)


@given(
    st.dictionaries(st.sampled_from(["seq", "kind", "id", "op", "at", "data"]), json_values)
    | near_valid_changes
)
def test_every_change_is_taken_or_counted_by_its_reason(item: dict[str, object]) -> None:
    page = answer_or_reason(parse_page, {"changes": [item], "cursor": "1", "more": False}, "bad_page")
    if page is None:
        assert not isinstance(item.get("seq"), int) or isinstance(item.get("seq"), bool)  # only a bad seq
    else:
        assert isinstance(page, Page)
        assert len(page.changes) + page.rejected.total() == 1
        assert set(page.rejected) <= CHANGE_REASONS


def test_a_consent_delete_names_its_purpose_and_nothing_else() -> None:
    """The cloud stopped sending this store the shopper: which purpose's row to forget, no choice, no time."""
    parsed = parse_page(page(change(1, "consent", op="delete", purpose="presence_ble", granted=False)))
    assert not parsed.rejected
    assert parsed.changes[0].op == "delete"
    assert parsed.changes[0].data == {"purpose": Purpose.PRESENCE_BLE}
