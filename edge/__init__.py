"""Store edge gateway: physical signals in, personal service out, privacy first."""

__version__ = "0.1.0"
