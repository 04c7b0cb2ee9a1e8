from edge.identity import ReplayGuard


def test_claim_replay_expiry_and_prune() -> None:
    guard = ReplayGuard()
    assert guard.claim("a", exp_wall=100.0, now_wall=0.0)
    assert not guard.claim("a", exp_wall=100.0, now_wall=50.0)
    assert guard.claim("b", exp_wall=40.0, now_wall=0.0)
    assert len(guard) == 2
    assert guard.prune(now_wall=40.0) == 0  # "a" arrived first and is still live: b waits behind it
    assert guard.prune(now_wall=100.0) == 2
    assert len(guard) == 0
    # an expired jti may be claimed again (the token itself is refused as expired before this)
    assert guard.claim("a", exp_wall=300.0, now_wall=200.0)


def test_load_and_release() -> None:
    guard = ReplayGuard()
    assert guard.load([("x", 500.0), ("y", 100.0)]) == 2
    assert not guard.claim("x", 500.0, now_wall=10.0)
    guard.release("x")
    assert guard.claim("x", 500.0, now_wall=10.0)
    assert guard.prune(now_wall=100.0) == 1  # y
    assert not guard.claim("x", 500.0, now_wall=101.0)


def test_reclaimed_entry_is_not_pruned_by_its_old_expiry() -> None:
    guard = ReplayGuard()
    guard.claim("a", exp_wall=10.0, now_wall=0.0)
    guard.claim("a", exp_wall=50.0, now_wall=20.0)  # expired at 10, claimed again
    assert guard.prune(now_wall=30.0) == 0
    assert not guard.claim("a", exp_wall=50.0, now_wall=30.0)
