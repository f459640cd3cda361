"""expyre ssh plugin (skeleton)."""
