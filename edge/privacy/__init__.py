"""The shopper's rights at the store: what the store holds about them (export, kiosk summary), why each offer
was chosen, and the privacy actions a shopper takes at a touchpoint (docs/privacy.md)."""
