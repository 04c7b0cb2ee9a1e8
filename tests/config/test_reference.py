"""docs/config.md and the allow-list in docs/remote-config.md are generated from the schema: stale is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import reference
from edge.config.reference import BLE_DOC, CONFIG_DOC, REMOTE_DOC, outputs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", [CONFIG_DOC, REMOTE_DOC, BLE_DOC])
def test_the_generated_documents_are_up_to_date(doc: Path) -> None:
    expected = outputs(REPO)[REPO / doc]
    assert (REPO / doc).read_text(encoding="utf-8") == expected, (
        f"{doc} is stale: run `python -m edge.config.reference` and commit the result"
    )


def test_defaults_and_push_answers_are_findable() -> None:
    text = (REPO / CONFIG_DOC).read_text(encoding="utf-8")
    assert "| `min_display_s` | float | 8 | >= 0, <= 600 | yes |" in text
    assert "| `content_ttl_s` | float | 45 | > 0, <= 3600 | yes |" in text
    assert "| `password_file` | path or unset | unset |  | no |" in text
    assert "| `max_token_lifetime_s` | float | 900 | > 0, <= 1800 | no |" in text


def test_check_mode_reports_a_stale_file_and_write_mode_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / REMOTE_DOC).write_text((REPO / REMOTE_DOC).read_text(encoding="utf-8"))
    (tmp_path / CONFIG_DOC).write_text("old\n")
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/config.md: stale" in capsys.readouterr().err
    assert (tmp_path / CONFIG_DOC).read_text() == "old\n"  # --check never writes
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert reference.main(["--check", "--root", str(tmp_path)]) == 0
