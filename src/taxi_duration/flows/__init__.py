"""Orchestration: the Prefect flows. The only package that imports Prefect.

One module per flow (``train``, ``tune``, ``predict``, ``backtest``), each taking its
command's spec (``taxi_duration.specs``) as its one parameter; ``tasks`` wraps each step in
a task.
"""
