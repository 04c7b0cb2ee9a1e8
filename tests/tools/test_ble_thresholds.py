from edge.tools.ble import MIN_HYSTERESIS_DB, thresholds


def test_thresholds_follow_the_median_and_spread() -> None:
    steady = thresholds("store beacon a", [-70] * 20 + [-71] * 10 + [-69] * 10)
    assert steady.enter_rssi_dbm == -70
    assert steady.enter_rssi_dbm - steady.exit_rssi_dbm == MIN_HYSTERESIS_DB  # tight samples: the floor
    noisy = thresholds("store beacon a", [-70, -62, -80, -71, -69, -85, -70, -66, -74, -70, -90, -68])
    assert noisy.enter_rssi_dbm == -70
    assert noisy.exit_rssi_dbm < steady.exit_rssi_dbm  # a wider spread gives a lower exit
    assert noisy.p10_dbm <= noisy.median_dbm <= noisy.p90_dbm
