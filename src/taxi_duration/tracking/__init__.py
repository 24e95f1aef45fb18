"""Tracking: log a training run to MLflow and register its model. The only MLflow import
but pyfunc_model.py, the registered model's entry file.

Its modules, each importing only those above it:

- ``errors``: MLflow's failures as one-line TrackingErrors naming the tracking URI;
- ``store``: the client of the store, the lock on the embedded (sqlite) store, the experiment;
- ``runs``: a training run logged and its model registered (the package travels with it, as
  MLflow's ``code_paths``); parent and nested runs;
- ``registry``: the champion and its run's record, a registered version loaded and scored,
  the aliases (promotion, ``promote`` by hand);
- ``monitoring``: the monitor's run of each month.
"""
