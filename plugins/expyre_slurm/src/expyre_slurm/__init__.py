"""expyre slurm plugin (skeleton)."""
