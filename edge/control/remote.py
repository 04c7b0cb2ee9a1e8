"""Remote configuration: verify -> validate -> snapshot -> apply -> health check -> report; roll back on failure.

The cloud publishes a signed, versioned overlay on ``config/desired`` (retained, see ``desired.py``). One
task takes pushes in order (a newer push waiting replaces an older one still queued) and, for each:

1. verifies it (signature, store, claims); a push at the running version does nothing; an older or equal
   one is ``rejected`` as not newer;
2. checks it against the allow-list (``edge/config/push.py``: a push never moves where the gateway
   connects, its credentials, the keys it trusts or the files it reads), merges it over the store's own
   file and validates the result with the file's pydantic model, files included; anything refused or
   invalid is ``rejected`` with the key paths (never a file's path or whether it exists);
3. snapshots it durably with the store marked *pending* (a crash from here on rolls back at start);
4. asks the gateway to apply it: live where the change allows, otherwise by rebuilding the gateway's
   parts in this process (the ledger stays open, nothing is lost); a part that refuses it leaves the
   running configuration in place (``rejected``, ``apply_failed``);
5. watches the gateway for ``health_deadline_s``: at the end of it the broker must be connected and no
   component may report a problem it did not have before; otherwise the previous configuration is
   applied again and the push is reported ``rolled_back`` with the reason.

Every outcome is published, retained, on ``config/reported`` and counted in ``gateway/health``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.clock import Clock, iso_utc
from edge.config import ConfigError, GatewaySettings, missing_files, parse_settings
from edge.config.control_plane import ControlSettings
from edge.config.push import PushLimits, PushRefused, vet_overlay
from edge.control.desired import DesiredConfig, PushReason, PushRejected, merge, verify_push
from edge.control.snapshots import ConfigSnapshots, ControlState, Snapshot, StateWriteError
from edge.transport.mqtt import Inbound

log = logging.getLogger(__name__)

# Problems quoted in a report: enough to act on, bounded so a report stays small.
MAX_PROBLEMS_REPORTED: Final = 5


class ApplyError(Exception):
    """A part of the gateway refused the new configuration; the running one is still in place."""


class Target(Protocol):
    """What the controller needs of the gateway."""

    settings: GatewaySettings

    async def apply(self, settings: GatewaySettings) -> str:
        """Run ``settings`` from now on; returns how ('none', 'live', 'reload'); raises ApplyError."""
        ...

    def problems(self) -> list[str]:
        """Current health problems as 'component: detail' (empty: healthy, broker connected)."""
        ...


def push_file_problems(settings: GatewaySettings) -> list[str]:
    """Missing files as 'key.path: file not found', without the path: a push learns nothing of the disk."""
    return missing_files(settings, show_paths=False)


def problem_keys(problems: list[str]) -> set[str]:
    """The component part of each problem ('mqtt', 'camera cam-1'...): counts in the detail may change."""
    return {problem.split(":", 1)[0] for problem in problems}


@dataclass(slots=True, frozen=True)
class ControlStats:
    """The remote configuration for gateway/health (``control``, docs/remote-config.md)."""

    current: int  # the pushed version running (0: the file alone)
    pending: int | None  # on trial in the health window
    highest_seen: int
    kept: tuple[int, ...]  # snapshot versions on disk
    counters: Mapping[str, int]  # received, applied, rolled_back, ... (only those that happened)
    rejected: Mapping[str, int]  # refused pushes by reason
    flags: tuple[str, ...]  # control-state problems raised as alerts


class RemoteConfig:
    """The control plane's configuration side for one gateway (survives the gateway's rebuilds)."""

    def __init__(
        self,
        settings: ControlSettings,
        *,
        keys: Mapping[str, Ed25519PublicKey],
        store_id: str,
        base: Mapping[str, Any],
        base_dir: Path,
        report_topic: str,
        clock: Clock,
        check_files: Callable[[GatewaySettings], list[str]] = push_file_problems,
    ) -> None:
        self.settings = settings
        self._keys = dict(keys)
        self._store_id = store_id
        self._base = dict(base)
        self._base_dir = base_dir
        self._report_topic = report_topic
        self._clock = clock
        self._check_files = check_files
        self._limits = PushLimits.of(settings)
        self.snapshots = ConfigSnapshots(settings.state_dir, keep=settings.snapshots_kept)
        self.state = ControlState()
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.flags: set[str] = set()
        self.last_report: dict[str, Any] | None = None
        self._target: Target | None = None
        self._publish: Callable[[str, bytes], None] | None = None
        self._waiting: bytes | None = None
        self._wake = asyncio.Event()

    # ----- start-up (blocking I/O: before the event loop serves anything) -----
    def startup(self, file_settings: GatewaySettings) -> GatewaySettings:
        """The configuration to start with: the file plus the current snapshot, after a crash check."""
        state = self.snapshots.state()
        if state.pending is not None:
            # The previous process died while a push was on trial: that push goes, the last good one stays.
            log.error(
                "config %s was on trial when the gateway stopped; going back to %s",
                state.pending,
                state.current,
            )
            self._report(state.pending, "rolled_back", "the gateway restarted during the health check")
            self.counters["rolled_back"] += 1
            state = replace(state, pending=None)
            self._write_state_or_flag(state)
        self.state = state
        if state.current == 0:
            return file_settings
        snapshot = self.snapshots.load(state.current)
        if snapshot is None:
            log.error("snapshot of config %s is missing; running the file alone", state.current)
            self.flags.add("config_snapshot_missing")
            return file_settings
        try:
            return self.build(snapshot.overlay)
        except (ConfigError, PushRefused) as exc:
            # The file changed under the snapshot (an operator's edit), or the allow-list no longer allows it
            # (a snapshot from before it, a files_dir the file dropped): the file wins, loudly.
            log.error(  # noqa: TRY400 - the problems are the message, not a traceback
                "config %s no longer validates over the file (%s); running the file alone", state.current, exc
            )
            self.flags.add("config_snapshot_invalid")
            return file_settings

    def build(self, overlay: Mapping[str, Any]) -> GatewaySettings:
        """The file with ``overlay`` on top, validated exactly like the file.

        Raises PushRefused when the overlay is off the allow-list, ConfigError when the result is invalid.
        """
        allowed = vet_overlay(overlay, self._limits)
        settings = parse_settings(merge(self._base, allowed), base_dir=self._base_dir, source="config push")
        problems = self._check_files(settings)
        if problems:
            raise ConfigError("config push", problems)
        return settings

    # ----- wiring into each generation of the gateway -----
    def attach(
        self,
        target: Target,
        subscribe: Callable[[str, Any], None],
        publish: Callable[[str, bytes], None],
        desired_topic: str,
    ) -> None:
        """A (re)built gateway: route ``config/desired`` here and republish the last report (retained)."""
        self._target = target
        self._publish = publish
        subscribe(desired_topic, self.on_message)
        if self.last_report is not None:
            publish(self._report_topic, _json(self.last_report))

    async def on_message(self, message: Inbound) -> None:
        """Queue a push; the newest waiting one wins. Returns at once (the message is acked)."""
        if not message.payload:
            return  # the retained push was cleared: nothing to apply, nothing to report
        self.counters["received"] += 1
        if self._waiting is not None:
            self.counters["superseded"] += 1
        self._waiting = message.payload
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            payload, self._waiting = self._waiting, None
            if payload is not None:
                try:
                    await self.handle(payload)
                except Exception:
                    # One push must never take the control plane down; it is counted and reported.
                    log.exception("config push handling failed")
                    self.counters["errors"] += 1

    # ----- one push -----
    async def handle(self, payload: bytes) -> str:
        """Verify, apply, check and report one push; returns its status."""
        result = verify_push(payload, self._keys, self._store_id, max_bytes=self.settings.max_payload_bytes)
        if isinstance(result, PushRejected):
            return self._reject(result)
        if result.version == self.state.current:
            self.counters["same_version"] += 1  # applying the same version twice does nothing
            return "unchanged"
        if result.version <= self.state.highest_seen:
            if self._is_rolled_back_echo(result.version):
                # The retained push comes back on the reconnect its own rollback made: its outcome stands.
                self.counters["repeated"] += 1
                return "unchanged"
            return self._reject(
                PushRejected(
                    PushReason.NOT_NEWER, f"the store has seen {self.state.highest_seen}", result.version
                )
            )
        try:
            settings = self.build(result.overlay)
        except PushRefused as exc:
            return self._reject(PushRejected(PushReason(exc.reason), exc.detail, result.version))
        except ConfigError as exc:
            detail = "; ".join(exc.problems[:MAX_PROBLEMS_REPORTED])
            return self._reject(PushRejected(PushReason.INVALID_CONFIG, detail, result.version))
        return await self._apply(result, settings)

    def _is_rolled_back_echo(self, version: int) -> bool:
        report = self.last_report
        return report is not None and report["version"] == version and report["status"] == "rolled_back"

    async def _apply(self, desired: DesiredConfig, settings: GatewaySettings) -> str:
        target = self._require_target()
        before = self.state
        trial = ControlState(current=before.current, pending=desired.version, highest_seen=desired.version)
        snapshot = Snapshot(desired.version, desired.overlay, self._clock.wall())
        try:
            await asyncio.to_thread(self._begin, snapshot, trial)
        except StateWriteError as exc:
            self.flags.add("control_state_write_failed")
            return self._reject(PushRejected(PushReason.STATE_WRITE_FAILED, str(exc), desired.version))
        self.flags.discard("control_state_write_failed")
        self.state = trial
        previous = target.settings
        baseline = problem_keys(target.problems())
        log.info("applying config %s (running %s)", desired.version, before.current)
        try:
            how = await target.apply(settings)
        except ApplyError as exc:
            await self._settle(ControlState(before.current, None, desired.version))
            detail = self._without_folders(str(exc))
            return self._reject(PushRejected(PushReason.APPLY_FAILED, detail, desired.version))
        problem = await self._watch(baseline)
        if problem is None:
            await self._settle(ControlState(desired.version, None, desired.version))
            self.counters["applied"] += 1
            log.info("config %s applied (%s)", desired.version, how)
            self._report(desired.version, "applied", None)
            return "applied"
        log.error(
            "config %s failed its health check (%s); rolling back to %s",
            desired.version,
            problem,
            before.current,
        )
        try:
            await target.apply(previous)
        except ApplyError:
            log.exception("rolling back config %s failed", desired.version)
        await self._settle(ControlState(before.current, None, desired.version))
        self.counters["rolled_back"] += 1
        self._report(desired.version, "rolled_back", problem)
        return "rolled_back"

    async def _watch(self, baseline: set[str]) -> str | None:
        """Watch the whole window; the verdict is the state at its end (a reconnect within it is fine)."""
        await asyncio.sleep(self.settings.health_deadline_s)
        problems = self._require_target().problems()
        new = [problem for problem in problems if problem.split(":", 1)[0] not in baseline]
        mqtt = [problem for problem in problems if problem.startswith("mqtt:")]
        # Losing the broker always counts, even if it was already away before the push.
        failing = mqtt + [problem for problem in new if problem not in mqtt]
        if not failing:
            return None
        return f"unhealthy after {self.settings.health_deadline_s:g} s: " + "; ".join(
            failing[:MAX_PROBLEMS_REPORTED]
        )

    def _without_folders(self, text: str) -> str:
        """A part's refusal names files in the push folder or the model store: say which, not where."""
        folders = [
            (self._limits.files_dir, "<control.files_dir>"),
            (self.settings.state_dir, "<control.state_dir>"),
        ]
        for folder, name in folders:
            if folder is not None:
                text = text.replace(str(folder), name)
        return text

    # ----- state and reports -----
    def _begin(self, snapshot: Snapshot, trial: ControlState) -> None:
        self.snapshots.save(snapshot)
        self.snapshots.write_state(trial)

    async def _settle(self, state: ControlState) -> None:
        self.state = state
        await asyncio.to_thread(self._write_state_or_flag, state)
        await asyncio.to_thread(self.snapshots.prune, {state.current})

    def _write_state_or_flag(self, state: ControlState) -> None:
        try:
            self.snapshots.write_state(state)
            self.flags.discard("control_state_write_failed")
        except StateWriteError as exc:
            # Memory is right; the disk catches up with the next write. Until then: a health flag.
            log.error("control state not written: %s", exc)  # noqa: TRY400 - the errno says it all
            self.flags.add("control_state_write_failed")

    def _reject(self, rejected: PushRejected) -> str:
        self.rejected[str(rejected.reason)] += 1
        log.warning("config push rejected: %s (%s)", rejected.reason, rejected.detail)
        error = f"{rejected.reason}: {rejected.detail}" if rejected.detail else str(rejected.reason)
        self._report(rejected.version, "rejected", error)
        return "rejected"

    def _report(self, version: int | None, status: str, error: str | None) -> None:
        report: dict[str, Any] = {
            "v": 1,
            "ts": iso_utc(self._clock.wall()),
            "version": version,
            "status": status,
            "current": self.state.current,
        }
        if error is not None:
            report["error"] = error
        self.last_report = report
        if self._publish is not None:
            self._publish(self._report_topic, _json(report))

    def _require_target(self) -> Target:
        if self._target is None:
            msg = "RemoteConfig.attach() first"
            raise RuntimeError(msg)
        return self._target

    def stats(self) -> ControlStats:
        return ControlStats(
            current=self.state.current,
            pending=self.state.pending,
            highest_seen=self.state.highest_seen,
            kept=tuple(self.snapshots.versions()),
            counters=dict(self.counters),
            rejected=dict(self.rejected),
            flags=tuple(sorted(self.flags)),
        )


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
