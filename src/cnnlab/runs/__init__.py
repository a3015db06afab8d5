"""The run directory's life: its record, resuming it, sweeps of runs, DDP ranks, reproducibility."""
