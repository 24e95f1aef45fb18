"""The local stack: a Prefect server, an MLflow tracking server, a process worker and the
prediction service of each served color (``taxi-duration serve``, its champion over HTTP).

Its modules, each importing only those above it:

- ``config``: where the stack lives and listens (StackConfig, from ``TAXI_DURATION_*``), and the
  settings ``up`` keeps with it;
- ``services``: each service's command line and environment, and the flow runs' environment;
- ``pool``: what the stack asks its Prefect server: the work pool and its job template, the
  pool's in-flight runs, the alerts in force;
- ``supervisor``: the services' processes (PID files, process groups, ports) and health checks;
- ``commands``: ``taxi-duration stack up|down|status`` and what they print.
"""
