"""parse_transaction: POS sales (pos/{lane}/transaction), strict, never raising."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.sources.payloads import (
    MAX_TXN_ITEMS,
    Rejected,
    TransactionItem,
    TransactionMessage,
    is_id,
    parse_checkin,
    parse_transaction,
)
from edge.sources.rejections import Kind, reasons_of


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _sale(**fields: object) -> bytes:
    body: dict[str, object] = {
        "v": 1,
        "txn_id": "T-0001",
        "items": [{"sku": "SKU-1", "qty": 2, "price": 3.5}],
    }
    body.update(fields)
    return _json({k: v for k, v in body.items() if v is not ...})


def test_minimal_sale() -> None:
    parsed = parse_transaction(
        _json({"v": 1, "txn_id": "T1", "items": [{"sku": "4006381333931", "qty": 1, "price": 2}]})
    )
    assert parsed == TransactionMessage(
        txn_id="T1", items=(TransactionItem(sku="4006381333931", qty=1, price=2.0),)
    )
    assert isinstance(parsed, TransactionMessage)
    assert parsed.token is None
    assert parsed.amount == 2.0


def test_full_sale_keeps_only_known_fields() -> None:
    parsed = parse_transaction(
        _sale(
            token="a.b.c",
            total=6.5,
            currency="EUR",
            ts="2026-11-22T10:00:00Z",
            customer_name="never kept",
            items=[{"sku": "SKU-1", "qty": 2, "price": 3.5, "name": "Flat white"}],
        )
    )
    assert isinstance(parsed, TransactionMessage)
    assert parsed.token == "a.b.c"
    assert parsed.total == 6.5
    assert parsed.amount == 6.5  # the POS's total wins (discounts, tax)
    assert parsed.currency == "EUR"
    assert parsed.ts_wall == 1795341600.0
    assert parsed.items == (TransactionItem("SKU-1", 2, 3.5),)


def test_a_lines_category_is_one_of_the_offers_or_dropped_and_counted() -> None:
    parsed = parse_transaction(
        _sale(
            items=[
                {"sku": "A", "qty": 1, "price": 1, "category": "sports"},
                {"sku": "B", "qty": 1, "price": 1, "category": "Sports"},
                {"sku": "C", "qty": 1, "price": 1, "category": ["sports"]},
                {"sku": "D", "qty": 1, "price": 1, "category": None},
            ]
        )
    )
    assert isinstance(parsed, TransactionMessage)
    assert [item.category for item in parsed.items] == ["sports", None, None, None]
    assert parsed.bad_categories == 2
    assert parse_transaction(_sale()).bad_categories == 0  # type: ignore[union-attr]


def test_token_never_in_repr() -> None:
    parsed = parse_transaction(_sale(token="secret.jwt.value"))
    assert "secret" not in repr(parsed)


@pytest.mark.parametrize("token", [None, ""])
def test_missing_null_or_empty_token_is_an_anonymous_sale(token: object) -> None:
    parsed = parse_transaction(_sale(token=token))
    assert isinstance(parsed, TransactionMessage)
    assert parsed.token is None


def test_computed_total_is_rounded_half_up_to_cents() -> None:
    items = [
        {"sku": "a", "qty": 3, "price": 1.1},  # 3.3000000000000003 in floats
        {"sku": "b", "qty": 1, "price": 2.675},  # round(2.675, 2) == 2.67 in floats
        {"sku": "c", "qty": 1, "price": 0},
    ]
    parsed = parse_transaction(_sale(items=items))
    assert isinstance(parsed, TransactionMessage)
    assert parsed.amount == 5.98


def test_item_cap() -> None:
    many = [{"sku": f"s{i}", "qty": 1, "price": 1} for i in range(MAX_TXN_ITEMS)]
    assert isinstance(parse_transaction(_sale(items=many)), TransactionMessage)
    too_many = [*many, {"sku": "x", "qty": 1, "price": 1}]
    assert parse_transaction(_sale(items=too_many)) == Rejected("too_many_items")


def _item(**fields: object) -> list[dict[str, object]]:
    item: dict[str, object] = {"sku": "SKU-1", "qty": 1, "price": 1.0}
    item.update(fields)
    return [{k: v for k, v in item.items() if v is not ...}]


REJECTIONS = {
    b"\xff\xfe": "not_utf8",
    b"{": "not_json",
    b"NaN": "not_object",
    b"[1]": "not_object",
    b"[" * 100_000: "not_json",
    b'{"txn_id": "T", "items": [{"sku": "a", "price": 1, "qty": ' + b"9" * 5000 + b"}]}": "not_json",
    _sale(v=2): "unsupported_version",
    _sale(v=True): "unsupported_version",
    _sale(v=1.0): "unsupported_version",
    _sale(v="1"): "unsupported_version",
    _sale(txn_id=...): "bad_txn_id",
    _sale(txn_id=""): "bad_txn_id",
    _sale(txn_id=42): "bad_txn_id",
    _sale(txn_id="a/b"): "bad_txn_id",
    _sale(txn_id="x" * 65): "bad_txn_id",
    _sale(token=5): "malformed_token",
    _sale(token=["a.b.c"]): "malformed_token",
    _sale(items=...): "bad_items",
    _sale(items=[]): "bad_items",
    _sale(items={"sku": "a"}): "bad_items",
    _sale(items="SKU-1"): "bad_items",
    _sale(items=[1]): "bad_item",
    _sale(items=[None]): "bad_item",
    _sale(items=_item(sku=...)): "bad_sku",
    _sale(items=_item(sku=12345)): "bad_sku",
    _sale(items=_item(sku="has space")): "bad_sku",
    _sale(items=_item(sku="é")): "bad_sku",
    _sale(items=_item(qty=...)): "bad_qty",
    _sale(items=_item(qty=0)): "bad_qty",
    _sale(items=_item(qty=-1)): "bad_qty",
    _sale(items=_item(qty=1.5)): "bad_qty",
    _sale(items=_item(qty=1.0)): "bad_qty",
    _sale(items=_item(qty=True)): "bad_qty",
    _sale(items=_item(qty="2")): "bad_qty",
    _sale(items=_item(qty=10**30)): "bad_qty",
    _sale(items=_item(qty=[1])): "bad_qty",
    _sale(items=_item(price=...)): "bad_price",
    _sale(items=_item(price="3.50")): "bad_price",
    _sale(items=_item(price=-0.01)): "bad_price",
    _sale(items=_item(price=True)): "bad_price",
    _sale(items=_item(price=None)): "bad_price",
    _sale(items=_item(price=10**400)): "bad_price",
    _sale(items=_item(price=1e300)): "bad_price",
    b'{"txn_id": "T", "items": [{"sku": "a", "qty": 1, "price": 1}]}': "missing_version",
    b'{"v": 1, "txn_id": "T", "items": [{"sku": "a", "qty": 1, "price": NaN}]}': "bad_price",
    b'{"v": 1, "txn_id": "T", "items": [{"sku": "a", "qty": 1, "price": Infinity}]}': "bad_price",
    b'{"v": 1, "txn_id": "T", "items": [{"sku": "a", "qty": 1, "price": -Infinity}]}': "bad_price",
    _sale(total=-1): "bad_total",
    _sale(total="6.50"): "bad_total",
    _sale(total=False): "bad_total",
    b'{"v": 1, "txn_id": "T", "items": [{"sku": "a", "qty": 1, "price": 1}], "total": NaN}': "bad_total",
    _sale(currency="eur"): "bad_currency",
    _sale(currency="EURO"): "bad_currency",
    _sale(currency="E1R"): "bad_currency",
    _sale(currency="ÉUR"): "bad_currency",
    _sale(currency=978): "bad_currency",
    _sale(ts="yesterday"): "bad_ts",
    _sale(ts=1795341600): "bad_ts",
    _sale(ts="1970-01-01T00:00:00Z"): "bad_ts",
    _sale(ts="9999-12-31T23:59:59Z"): "bad_ts",
}


@pytest.mark.parametrize(("payload", "reason"), list(REJECTIONS.items()), ids=lambda v: str(v)[:30])
def test_rejections(payload: bytes, reason: str) -> None:
    assert parse_transaction(payload) == Rejected(reason)


def test_huge_integer_literal_no_longer_raises_in_any_parser() -> None:
    huge = b'{"zone": ' + b"1" * 5000 + b"}"
    assert parse_checkin(huge) == Rejected("not_json")


def test_is_id() -> None:
    assert is_id("lane-1")
    assert is_id("3")
    assert not is_id("")
    assert not is_id("+")
    assert not is_id("a/b")
    assert not is_id(None)


@given(st.binary(max_size=512))
def test_never_raises_on_bytes(payload: bytes) -> None:
    parsed = parse_transaction(payload)
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.POS), parsed.reason
    else:
        assert isinstance(parsed, TransactionMessage)
        assert is_id(parsed.txn_id)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**400)
    | st.floats()  # NaN and infinities too: json.dumps writes them as NaN/Infinity, json.loads reads them
    | st.text(max_size=12)
    | st.sampled_from(["EUR", "SKU-1", "2026-11-22T10:00:00Z", "a.b.c"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
items = st.lists(
    st.dictionaries(st.sampled_from(["sku", "qty", "price", "name"]), json_values)
    | st.fixed_dictionaries(
        {
            "sku": st.sampled_from(["SKU-1", "4006381333931"]) | json_scalars,
            "qty": st.integers(min_value=-2, max_value=2_000_000) | json_scalars,
            "price": st.floats() | st.integers() | json_scalars,
        }
    ),
    max_size=5,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2]) | json_values,
            "txn_id": st.sampled_from(["T-1", "0001"]) | json_values,
            "token": st.sampled_from(["a.b.c", ""]) | json_values,
            "items": items | json_values,
            "total": st.floats() | json_values,
            "currency": st.sampled_from(["EUR", "usd"]) | json_values,
            "ts": st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00+05:00"]) | json_values,
        },
    )
)
def test_never_raises_on_json_objects(body: dict[str, object]) -> None:
    parsed = parse_transaction(json.dumps(body).encode())
    if isinstance(parsed, TransactionMessage):
        # Whatever passes is within the rules, and its total is a finite, JSON-safe number.
        assert 0 < len(parsed.items) <= MAX_TXN_ITEMS
        assert all(is_id(item.sku) and item.qty > 0 and math.isfinite(item.price) for item in parsed.items)
        assert math.isfinite(parsed.amount)
        assert parsed.amount >= 0
        json.dumps({"total": parsed.amount}, allow_nan=False)
    else:
        assert isinstance(parsed, Rejected)
        assert parsed.reason in reasons_of(Kind.POS), parsed.reason
