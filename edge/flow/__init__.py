"""The gateway's flow, one module per source beside the others: check-ins, acks, POS, BLE, cameras; the floor
(presence -> screens -> ledger), the zones' counts and the one owner of the decision engine."""
