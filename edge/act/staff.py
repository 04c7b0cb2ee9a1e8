"""Which staff notices are open (pure): one per visit of a ``clienteling`` shopper to a team's zones.

A team looks after some zones (``[staff] teams``). When a shopper who asked for personal service is present
in one of them and the team has no open notice for them, a notice opens (with the zone they were first seen
in); when they are in none of the team's zones any more (they left, or withdrew the consent), it is
withdrawn. Moving between two zones of one team is the same visit. Notice ids are random: nothing in them
leads back to the shopper, and the mapping lives only here, in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: str
    team: str
    zone: str
    shopper_id: str


class StaffBoard:
    def __init__(self, teams: Mapping[str, Sequence[str]], *, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._zones = {team: tuple(zones) for team, zones in teams.items()}
        self._teams_of: dict[str, list[str]] = {}
        for team, zones in teams.items():
            for zone in zones:
                self._teams_of.setdefault(zone, []).append(team)
        self._open: dict[tuple[str, str], Notice] = {}
        self._by_id: dict[str, Notice] = {}

    def watches(self, zone: str) -> bool:
        return zone in self._teams_of

    def zone_changed(
        self, zone: str, who: Callable[[str], Sequence[str]]
    ) -> tuple[list[Notice], list[Notice]]:
        """``zone``'s people may have changed; ``who(z)``: the clienteling shoppers in zone ``z`` now.

        Returns (notices opened, notices withdrawn). A team's visit ends only when the shopper is in none
        of its zones, asked of the live state: a move from one of its zones to another (a leave, then an
        enter) is the same visit."""
        opened: list[Notice] = []
        withdrawn: list[Notice] = []
        here = list(dict.fromkeys(who(zone)))
        for team in self._teams_of.get(zone, ()):
            for shopper_id in here:
                if (team, shopper_id) not in self._open:
                    notice = Notice(self._new_id(), team, zone, shopper_id)
                    self._open[(team, shopper_id)] = self._by_id[notice.notice_id] = notice
                    opened.append(notice)
            leaving = [key for key in self._open if key[0] == team and key[1] not in here]
            if not leaving:
                continue
            in_team = {shopper for other in self._zones[team] if other != zone for shopper in who(other)}
            for key in leaving:
                if key[1] not in in_team:
                    notice = self._open.pop(key)
                    del self._by_id[notice.notice_id]
                    withdrawn.append(notice)
        return opened, withdrawn

    def notice(self, notice_id: str) -> Notice | None:
        return self._by_id.get(notice_id)

    def open_notices(self) -> int:
        return len(self._open)
