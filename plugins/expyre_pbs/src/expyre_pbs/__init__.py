"""expyre pbs plugin (skeleton)."""
