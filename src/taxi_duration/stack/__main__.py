"""``python -m taxi_duration.stack``: the command is the CLI's (the stack imports no CLI)."""

# Say so, not exit 0.
raise SystemExit("python -m taxi_duration.stack: run taxi-duration stack up|down|status")
