"""A token key the cloud revokes stays revoked: across a rebuild by a config push, a live config change and a
restart over the same ledger, even though identity.public_key_files still holds the key; until the cloud
trusts the kid again."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from edge.daemon import Gateway
from edge.identity import generate_keypair
from edge.identity.keys import key_id
from edge.identity.tokens import RejectReason
from tests.control.conftest import DESIRED, REPORTED, make_control_store
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, sync_section
from tests.support.wait import until
from tests.sync.test_gateway_sync import _token_with


async def _checkin(probe: Probe, store: StoreKit, gateway: Gateway, private_pem: bytes, kid: str) -> str:
    """Publish a check-in signed by ``private_pem`` as ``kid``; 'accepted' or the rejection reason."""
    assert gateway.generation is not None
    flow = gateway.generation
    accepted, rejected = flow.verifier.accepted, sum(flow.verifier.rejections.values())
    token = _token_with(private_pem, kid, store.token("p-full"))
    await probe.publish(f"{ROOT}/checkin", {"v": 1, "token": token, "zone": "cafe"})
    await until(
        lambda: flow.verifier.accepted > accepted or sum(flow.verifier.rejections.values()) > rejected
    )
    if flow.verifier.accepted > accepted:
        return "accepted"
    return str(next(reason for reason, n in flow.verifier.rejections.items() if n))


async def test_a_revoked_file_key_stays_revoked_across_pushes_rebuilds_and_restarts(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        control = make_control_store(
            workdir, mosquitto.port, deadline_s=3.0, sync=sync_section(cloud.base_url, token, workdir)
        )
        store = control.store
        file_kid = key_id(load_pem_public_key((workdir / "token-public.pem").read_bytes()))  # type: ignore[arg-type]
        other_private, other_public = generate_keypair()
        await cloud.put_token_key("kid-other", other_public.decode())

        async with (
            Probe(store.port, REPORTED) as probe,
            running_gateway(store.settings(), config_path=store.config_path) as gateway,
        ):
            assert gateway.generation is not None
            await until(
                lambda: gateway.generation is not None and "kid-other" in gateway.generation.verifier.key_ids
            )
            assert await _checkin(probe, store, gateway, store.private_pem, file_kid) == "accepted"
            # The cloud revokes the key of the store's own key file.
            await cloud.delete_token_key(file_kid)
            await until(
                lambda: gateway.generation is not None and file_kid not in gateway.generation.verifier.key_ids
            )
            assert (
                await _checkin(probe, store, gateway, store.private_pem, file_kid) == RejectReason.UNKNOWN_KEY
            )

            # (a) A push that rebuilds every part in process: the key files are read again; still revoked.
            zones = [{"id": "cafe"}, {"id": "deli"}]
            displays = [{"id": "screen-cafe", "zone": "cafe"}, {"id": "screen-deli", "zone": "deli"}]
            await probe.publish(DESIRED, control.push(1, {"zones": zones, "displays": displays}), retain=True)
            await probe.wait_for(lambda: len(probe.json_on(REPORTED)) >= 1, timeout=15)
            assert probe.json_on(REPORTED)[0]["status"] == "applied", probe.json_on(REPORTED)
            assert gateway.generation.presence.knows_zone("deli")  # it was rebuilt
            assert file_kid not in gateway.generation.verifier.key_ids
            assert (
                await _checkin(probe, store, gateway, store.private_pem, file_kid) == RejectReason.UNKNOWN_KEY
            )
            assert await _checkin(probe, store, gateway, other_private, "kid-other") == "accepted"

            # (c) A configuration reload applied live: still revoked.
            await probe.publish(
                DESIRED, control.push(2, {"presence": {"checkin_timeout_s": 40}}), retain=True
            )
            await probe.wait_for(lambda: len(probe.json_on(REPORTED)) >= 2, timeout=15)
            assert probe.json_on(REPORTED)[1]["status"] == "applied"
            assert file_kid not in gateway.generation.verifier.key_ids

        # (b) A restart over the same ledger, with the cloud away: the revocation comes from the ledger alone.
        await cloud.stop()
        async with (
            Probe(store.port, REPORTED) as probe,
            running_gateway(store.settings(), config_path=store.config_path) as gateway,
        ):
            assert gateway.generation is not None
            assert file_kid not in gateway.generation.verifier.key_ids
            assert "kid-other" in gateway.generation.verifier.key_ids
            assert (
                await _checkin(probe, store, gateway, store.private_pem, file_kid) == RejectReason.UNKNOWN_KEY
            )

            # The cloud trusts the kid again: that, and only that, lifts the revocation.
            await cloud.start()
            await cloud.put_token_key(file_kid, (workdir / "token-public.pem").read_text())
            await until(
                lambda: gateway.generation is not None and file_kid in gateway.generation.verifier.key_ids
            )
            assert await _checkin(probe, store, gateway, store.private_pem, file_kid) == "accepted"
