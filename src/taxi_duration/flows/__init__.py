"""Orchestration: the Prefect flows. The only package that imports Prefect.

One module per flow; ``tasks`` wraps each step in a task.
"""

from taxi_duration.flows.backtest import backtest, backtest_flow
from taxi_duration.flows.predict import predict
from taxi_duration.flows.train import STEPS, train
from taxi_duration.flows.tune import search, tune

__all__ = ["STEPS", "backtest", "backtest_flow", "predict", "search", "train", "tune"]
