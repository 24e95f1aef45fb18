"""The local stack: a Prefect server, an MLflow tracking server, a process worker and the
prediction service of each served color; ``taxi-duration stack up|down|status`` is in
``commands``."""
