"""Built-in plugins of Steward Points, one module each, registered by short name."""
