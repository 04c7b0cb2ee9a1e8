from edge.identity import Claim, ReplayGuard


def test_claim_replay_expiry_and_prune() -> None:
    guard = ReplayGuard()
    assert guard.claim("a", until_wall=100.0, now_wall=0.0) is Claim.NEW
    assert guard.claim("a", until_wall=100.0, now_wall=50.0) is Claim.SEEN
    assert guard.claim("b", until_wall=40.0, now_wall=0.0) is Claim.NEW
    assert len(guard) == 2
    assert guard.prune(now_wall=40.0) == 0  # "a" arrived first and is still live: b waits behind it
    assert guard.prune(now_wall=100.0) == 2
    assert len(guard) == 0
    assert guard.floor_wall == 100.0
    # an ended claim may be claimed again by a token that is still valid (the verifier refuses the rest)
    assert guard.claim("a", until_wall=300.0, now_wall=200.0) is Claim.NEW


def test_load_and_release() -> None:
    guard = ReplayGuard()
    assert guard.load([("x", 500.0), ("y", 100.0)]) == 2
    assert guard.claim("x", 500.0, now_wall=10.0) is Claim.SEEN
    guard.release("x")
    assert guard.claim("x", 500.0, now_wall=10.0) is Claim.NEW
    assert guard.prune(now_wall=100.0) == 1  # y
    assert guard.claim("x", 500.0, now_wall=101.0) is Claim.SEEN


def test_reclaimed_entry_is_not_pruned_by_its_old_expiry() -> None:
    guard = ReplayGuard()
    guard.claim("a", until_wall=10.0, now_wall=0.0)
    guard.claim("a", until_wall=50.0, now_wall=20.0)  # ended at 10, claimed again
    assert guard.prune(now_wall=30.0) == 0
    assert guard.claim("a", until_wall=50.0, now_wall=30.0) is Claim.SEEN


def test_a_clock_stepping_back_cannot_revive_a_forgotten_claim() -> None:
    guard = ReplayGuard()
    assert guard.claim("a", until_wall=3_700.0, now_wall=3_400.0) is Claim.NEW
    assert guard.prune(now_wall=7_200.0) == 1  # an hour later the claim is forgotten
    # The clock steps back an hour: the token would verify again, its jti is gone from memory.
    assert guard.claim("a", until_wall=3_700.0, now_wall=3_500.0) is Claim.CLOCK_BEHIND
    # A token minted after the floor is claimed as usual, and replays of it are refused as usual.
    assert guard.claim("b", until_wall=8_000.0, now_wall=3_500.0) is Claim.NEW
    assert guard.claim("b", until_wall=8_000.0, now_wall=3_501.0) is Claim.SEEN


def test_floor_from_the_ledger_purge_holds_after_a_restart() -> None:
    guard = ReplayGuard(floor_wall=7_200.0)  # the durable purge floor, read at start
    assert guard.claim("forgotten", until_wall=7_200.0, now_wall=3_600.0) is Claim.CLOCK_BEHIND
    guard.raise_floor(7_000.0)  # never lowered
    assert guard.floor_wall == 7_200.0
    assert guard.claim("later", until_wall=7_200.5, now_wall=3_600.0) is Claim.NEW
