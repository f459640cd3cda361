"""expyre sge plugin (skeleton)."""
