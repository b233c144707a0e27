"""Steward Points: a double-entry points ledger for volunteers, extended by pluggy plugins."""

__version__ = "0.1.0"
