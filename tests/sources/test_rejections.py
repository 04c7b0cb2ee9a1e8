"""The rejection vocabulary: the code's reasons, their meanings and docs/mqtt.md cannot drift apart."""

from __future__ import annotations

import ast
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from edge.sources import rejections
from edge.sources.rejections import MEANINGS, REASONS, Kind, RejectCounter, reasons_of, rejection_tables

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mqtt_docs.py"


def _script():
    spec = importlib.util.spec_from_file_location("mqtt_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", list(Kind))
def test_every_reason_has_a_meaning_and_every_meaning_a_reason(kind: Kind) -> None:
    assert set(MEANINGS[kind]) == reasons_of(kind)
    assert all(meaning.strip() for meaning in MEANINGS[kind].values())


def test_docs_mqtt_md_carries_the_generated_tables() -> None:
    doc = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    script = _script()
    assert doc == script.generated(doc), "docs/mqtt.md is stale: run python scripts/mqtt_docs.py"
    between = doc.split(script.BEGIN, 1)[1].split(script.END, 1)[0]
    assert between.strip() == rejection_tables().strip()
    for kind in Kind:
        for reason in reasons_of(kind):
            assert f"`{kind}.{reason}`" in between


def test_the_script_says_when_the_doc_is_stale(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    script = _script()
    stale = f"x\n{script.BEGIN}\n| `checkin.oversized_token` | old |\n{script.END}\ny\n"
    assert script.generated(stale) != stale
    assert script.generated(script.generated(stale)) == script.generated(stale)


def test_docs_metrics_md_names_every_kind() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| `edge_rejected_total"))
    for kind in Kind:
        assert f"`{kind}`" in row, kind


def _literal_reasons() -> list[tuple[str, int, str, str]]:
    """(file, line, kind, reason) of every ``.reject(kind, reason, ...)`` and ``._refuse(reason, ...)`` call in
    edge/ whose kind and reason are written out (a literal, an enum member, a module's KIND): the ones a
    parser test cannot see."""
    found = []
    names = {name: getattr(rejections, name) for name in dir(rejections)}
    for path in sorted((REPO / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_kind = None
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            value = getattr(node, "value", None)
            if any(isinstance(t, ast.Name) and t.id == "KIND" for t in targets) and value is not None:
                module_kind = _value(value, names)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "_refuse" and len(node.args) == 2:
                # GatewayFlow._refuse(reason, origin): a check-in's refusal, counted and answered.
                kind, reason = str(Kind.CHECKIN), _value(node.args[0], names)
            elif node.func.attr == "reject" and len(node.args) == 3:
                kind_node, reason_node = node.args[0], node.args[1]
                kind = module_kind if isinstance(kind_node, ast.Name) and kind_node.id == "KIND" else None
                kind = kind or _value(kind_node, names)
                reason = _value(reason_node, names)
            else:
                continue
            if kind is not None and reason is not None:
                found.append((path.relative_to(REPO).as_posix(), node.lineno, str(kind), str(reason)))
    return found


def _value(node: ast.expr, names: dict[str, object]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
        member = getattr(names[node.value.id], node.attr, None)
        return str(member) if member is not None else None
    return None


def test_every_reason_the_code_writes_out_is_documented_under_its_kind() -> None:
    found = _literal_reasons()
    assert len(found) >= 10, found  # the scan itself works: the flows write out many reasons
    undocumented = [
        (where, line, kind, reason)
        for where, line, kind, reason in found
        if kind not in set(Kind) or reason not in reasons_of(Kind(kind))
    ]
    assert not undocumented, undocumented


def test_the_counter_logs_the_first_of_each_kind_with_what_it_was_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = RejectCounter()
    with caplog.at_level(logging.DEBUG):
        for _ in range(50):
            counter.reject(Kind.ESPRESENSE, "bad_rssi", "espresense/devices/<device>/hall")
        counter.reject(Kind.ACK, "bad_status", "store/s1/display/d1/ack")
    assert counter.as_dict() == {"ack.bad_status": 1, "espresense.bad_rssi": 50}
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert "espresense/devices/<device>/hall" in lines[0]


def test_reasons_are_enums_of_distinct_values_per_kind() -> None:
    for kind, enums in REASONS.items():
        values = [member.value for enum in enums for member in enum]
        dupes = {value for value in values if values.count(value) > 1}
        assert not dupes, (kind, dupes)
