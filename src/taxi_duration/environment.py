"""What every run's environment gets unless it is set.

The CLI sets these before it loads any library that reads them once, and ``taxi-duration
stack up`` writes them into the work pool's job template for the runs a worker starts.
Plain data: the CLI imports it first.
"""

RUN_ENVIRONMENT_DEFAULTS = {
    # MLflow's own HTTP retries (7, backoff factor 2, 120 s timeout) take many minutes to
    # give up on a dead tracking server: a few quick retries, then one clear error.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # OpenMP threads (XGBoost's) that spin while they wait lose the core to a competing
    # process: training took 31 s instead of 2.8 s on a loaded 2-core machine.
    "OMP_WAIT_POLICY": "PASSIVE",
}
