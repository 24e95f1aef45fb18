"""Tracking: log a training run to MLflow and register its model; the package's only MLflow
import but pyfunc_model.py. Its code is in ``runs``."""
