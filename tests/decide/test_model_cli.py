"""``edge-gateway model list`` / ``model rollback`` on a real state dir, as an operator runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge import cli
from edge.decide.lifecycle import MODEL_FILE, ModelStore
from tests.decide.conftest import MANIFEST, MODEL
from tests.decide.test_lifecycle import SHIPPED, retrained, write_model
from tests.support.store import make_store

NEW = "2027.1.1"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The test store's configuration (its ``[control] state_dir`` is "state", next to it)."""
    return make_store(tmp_path / "store", port=1883).config_path  # the tool never connects to a broker


@pytest.fixture
def store(config: Path) -> ModelStore:
    """The store as the daemon leaves it: the shipped model at start, then a pushed one."""
    store = ModelStore.open(config.parent / "state")
    store.start(MODEL, MANIFEST)
    store.install_and_activate(None, *write_model(config.parent / "push", retrained(w1=1.3), NEW))
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(out: str) -> dict[str, str]:
    """version -> its line in the listing."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"^[* ] (\S+)\s+\d{4}-", line)
        if match:
            found[match.group(1)] = line
    return found


def test_list_on_an_empty_state_dir(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "model", "list", "--config", str(config))
    assert code == 0
    assert f"no models installed in {config.parent / 'state' / 'models'}" in out
    assert not (config.parent / "state").exists()  # listing creates nothing


def test_list_shows_versions_current_and_sha256(
    config: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "model", "list", "--config", str(config))
    assert code == 0
    listed = rows(out)
    assert list(listed) == [SHIPPED, NEW]  # oldest install first
    assert listed[NEW].startswith("* ")
    assert listed[SHIPPED].startswith("  ")
    assert "rollback target" in listed[SHIPPED]
    for model in store.versions():
        assert model.sha256[:12] in listed[model.version]
        assert model.sha256[:13] not in listed[model.version]


def test_rollback_moves_the_pointer_and_says_how_to_apply_it(
    config: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "model", "rollback", "--config", str(config))
    assert code == 0
    assert f"current model is now {SHIPPED} (was {NEW})" in out
    assert "systemctl reload edge-gateway" in out
    assert store.current_version() == SHIPPED
    listed = rows(run(capsys, "model", "list", "--config", str(config))[1])
    assert listed[SHIPPED].startswith("* ")
    assert "not in the history" in listed[NEW]
    # Nothing older is kept: a second rollback is refused and changes nothing.
    code, _, err = run(capsys, "model", "rollback", "--config", str(config))
    assert code == 1
    assert "nothing to roll back to" in err
    assert "nothing changed" in err
    assert store.current_version() == SHIPPED


def test_rollback_refuses_a_previous_model_that_does_not_load(
    config: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (store.root / SHIPPED / MODEL_FILE).write_bytes(b"bit rot")
    code, out, err = run(capsys, "model", "rollback", "--config", str(config))
    assert code == 1
    assert "rollback refused" in err
    assert "sha256" in err
    assert out == ""
    assert store.current_version() == NEW
    assert store.history() == [SHIPPED, NEW]


def test_a_broken_configuration_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[store]\nid = "s1"\n[control]\nstate_dir = 3\n')
    code, _, err = run(capsys, "model", "list", "--config", str(path))
    assert code == 1
    assert "control.state_dir" in err
    assert "zones" in err
