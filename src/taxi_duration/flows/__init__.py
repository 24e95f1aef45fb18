"""Orchestration: the Prefect flows. Prefect is imported here, by alerts.py and by the CLI.

One module per flow (``train``, ``tune``, ``predict``, ``backtest``), each taking its
command's spec (``taxi_duration.specs``) as its one parameter; ``tasks`` wraps each step in
a task.
"""
