"""What the gateway reports about itself: the ``gateway/health`` document, its alerts, and the problems a
configuration push is judged by (docs/mqtt.md, docs/remote-config.md). Read-only over the running parts."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from edge import __version__
from edge.clock import iso_utc

# A telemetry event given up raises sync_dead_letter for a day: someone sees it, and it clears by itself.
DEAD_LETTER_ALERT_S: Final = 86_400.0

if TYPE_CHECKING:
    from edge.daemon import Gateway
    from edge.ledger import Ledger
    from edge.transport.mqtt import MqttLink


def health_report(gateway: Gateway) -> dict[str, Any]:
    """The retained ``gateway/health`` document (docs/mqtt.md)."""
    g = gateway.generation
    if g is None:
        msg = "health() before the gateway was built"
        raise RuntimeError(msg)
    link, ledger, stats = g.link, g.ledger, g.stats
    now = gateway.clock.wall()
    ledger_stats = ledger.stats()
    last = stats.last_checkin_wall
    return {
        "v": 1,
        "ts": iso_utc(now),
        "version": __version__,
        "uptime_s": round(now - gateway.started_wall, 1),
        "config_version": gateway.config_version,
        "model_version": gateway.model_version,
        "mqtt": {"state": link.state, "outbox": link.outbox_depth, **dict(link.counters)},
        "ledger": {**ledger_stats, "corrupted_moved_to": str(ledger.corrupted_moved_to or "") or None},
        "queues": {"mqtt_outbox": link.outbox_depth, "ledger": ledger_stats.get("queue_depth", 0)},
        "drops": {"mqtt_outbox": link.counters["outbox_dropped"], "rejected": g.rejects.as_dict()},
        "checkins": stats.checkins,
        "checkins_redelivered": stats.redelivered,
        "decisions": g.decider.decisions,
        "decisions_unrecorded": stats.unrecorded,
        "clock": _clock(gateway),
        "exposures": stats.exposures,
        "acks": {"failed": stats.acks_failed, "shown_at_replaced": stats.shown_at_replaced},
        "pos": g.pos.stats.as_dict(),
        "last_checkin_age_s": None if last is None else round(now - last, 1),
        "last_signal_age_s": _signal_ages(gateway, None if last is None else round(now - last, 1)),
        "tokens": {
            "accepted": g.verifier.accepted,
            "rejected": {str(k): v for k, v in g.verifier.rejections.items()},
        },
        "displays": {
            display: {**shown, "acks_failed": stats.acks_failed_by_display[display]}
            for display, shown in g.board.snapshot().items()
        },
        "sync_backlog": _sync_backlog(gateway),
        "sync": gateway.sync_health,
        "ble": _ble_health(gateway),
        "cameras": {camera.settings.id: camera.stats() for camera in g.cameras} or None,
        "control": gateway.control.stats() if gateway.control is not None else None,
        "alerts": alerts(gateway, link, ledger),
    }


def problems(gateway: Gateway) -> list[str]:
    """Health problems as 'component: detail'; empty when the broker is connected and all is well."""
    g = gateway.generation
    if g is None:
        return ["gateway: not running"]
    link = g.link
    problems = [] if link.state == "connected" else [f"mqtt: {link.state}"]
    problems += alerts(gateway, link, g.ledger)
    for camera in g.cameras:
        state = camera.capture.stats().state
        if state == "reconnecting":
            problems.append(f"camera {camera.settings.id}: {state}")
    if g.scanner is not None and g.scanner.stats().state not in ("scanning", "starting"):
        problems.append(f"ble scanner: {g.scanner.stats().state}")
    return problems


def _clock(gateway: Gateway) -> dict[str, Any] | None:
    """The wall clock against the highest time this gateway has seen (edge/identity/wallclock.py)."""
    watch = gateway.wall_watch
    if watch.high_water_wall == float("-inf"):
        return None
    return {"high_water": iso_utc(watch.high_water_wall), "behind_s": round(watch.behind_s(), 1)}


def _signal_ages(gateway: Gateway, checkin: float | None) -> dict[str, float | None]:
    """Seconds since the last signal of each source this gateway has (None: none yet)."""
    g = gateway.generation
    ages: dict[str, float | None] = {"checkin": checkin}
    if g is None:
        return ages
    if g.scanner is not None:
        ages["ble_advert"] = g.scanner.stats().last_advert_age_s
    for camera in g.cameras:
        ages[f"camera:{camera.settings.id}"] = camera.capture.stats().last_frame_age_s
    return {name: None if age is None else round(age, 2) for name, age in ages.items()}


def _sync_backlog(gateway: Gateway) -> int | None:
    if gateway.sync_health is None:
        return None
    return int(gateway.sync_health["outbox"].get("events", 0))


def _ble_health(gateway: Gateway) -> dict[str, Any] | None:
    g = gateway.generation
    if g is None or g.ble is None:
        return None
    ble_flow, ingest = g.ble, g.ble.ingest
    return {
        "scanner": asdict(g.scanner.stats()) if g.scanner is not None else None,
        "adverts": dict(ingest.counters),
        "frames_rejected": dict(ingest.frame_counter),
        "presence": ingest.presence.stats(),
        "eid": ingest.resolver.stats(),
        "beacons": ingest.beacons.health(),
        "missing_beacons": ingest.beacons.missing(),
        "events": dict(ble_flow.counters),
    }


def alerts(gateway: Gateway, link: MqttLink, ledger: Ledger) -> list[str]:
    """Conditions an operator must look at; empty when all is well."""
    alerts = []
    if ledger.corrupted_moved_to is not None:
        alerts.append(f"ledger_corrupt: the database was moved aside to {ledger.corrupted_moved_to}")
    if ledger.stats().get("disk_full"):
        alerts.append("ledger_disk_full: writes fail for want of space; check-ins wait until space is freed")
    ble = gateway.generation.ble if gateway.generation is not None else None
    if ble is not None and ble.ingest.beacons.missing():
        alerts.append(f"beacons_missing: {', '.join(ble.ingest.beacons.missing())}")
    outbox = (gateway.sync_health or {}).get("outbox", {})
    if outbox.get("dropped_total") or outbox.get("dropped"):
        alerts.append(f"sync_outbox_dropped: telemetry dropped at the disk bound ({outbox.get('dropped')})")
    if outbox.get("over_bound"):
        alerts.append("sync_outbox_over_bound: privacy and conversion events exceed the outbox bound")
    alerts += refused_alerts(gateway.sync_health or {})
    if link.counters["outbox_dropped"]:
        alerts.append(f"mqtt_outbox_dropped: {link.counters['outbox_dropped']} messages")
    if gateway.control is not None:
        alerts += [f"{flag}: see control in gateway/health" for flag in sorted(gateway.control.flags)]
    watch = gateway.wall_watch
    if watch.is_behind():
        alerts.append(
            f"clock_behind: the wall clock is {watch.behind_s():.0f} s behind the latest time this gateway "
            "has seen; tokens whose replay protection may have ended are refused"
        )
    if gateway.metrics_error is not None:
        alerts.append(f"metrics_off: {gateway.metrics_error}")
    return alerts


def refused_alerts(sync: dict[str, Any]) -> list[str]:
    """Events the cloud refused: parked ones wait (privacy and conversions are never given up), and telemetry
    given up recently (a day: long enough for someone to look, then it clears; the table keeps them)."""
    alerts = []
    parked = sync.get("parked") or {}
    if parked.get("events"):
        classes = ", ".join(f"{cls} {n}" for cls, n in (parked.get("by_class") or {}).items() if n)
        alerts.append(
            f"sync_events_parked: {parked['events']} events the cloud refused are kept and retried ({classes}); "
            "edge-gateway dead-letter list --parked"
        )
    dead = sync.get("dead_letter") or {}
    last = dead.get("last_age_s")
    if last is not None and last < DEAD_LETTER_ALERT_S:
        alerts.append(
            f"sync_dead_letter: {dead.get('events')} telemetry events the cloud refused by name are held "
            "in the dead letters; edge-gateway dead-letter export"
        )
    return alerts
