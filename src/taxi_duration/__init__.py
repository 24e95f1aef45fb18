"""Train NYC taxi trip-duration models, orchestrated by Prefect and tracked in MLflow."""

__version__ = "0.1.0"
