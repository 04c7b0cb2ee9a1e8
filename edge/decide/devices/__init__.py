"""Smart devices that follow the opted-in people of their zone (docs/devices.md)."""
