"""The ``[staff]`` section: which team hears about which zones (docs/staff.md). Schema only."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from edge.config.base import Section

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StaffSettings(Section):
    """Staff notices: a shopper who asked for personal service (``clienteling``) comes in."""

    teams: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Team id -> the zones it looks after; a team's tablets read `…/staff/notice/{team}`. "
        "No team: no notices.",
    )

    @field_validator("teams")
    @classmethod
    def _ids(cls, teams: dict[str, list[str]]) -> dict[str, list[str]]:
        for team, zones in teams.items():
            if not re.fullmatch(_ID, team):
                msg = f"team {team!r} is not an id (1-64 ASCII letters, digits, -, _, .)"
                raise ValueError(msg)
            if not zones:
                msg = f"team {team!r} looks after no zone"
                raise ValueError(msg)
        return teams
