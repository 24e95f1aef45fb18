"""MLflow models-from-code entry point, run by MLflow when it loads a logged model.

Never imported by the package: ``tracking.log_and_register`` passes this file to MLflow,
which copies it into the model and executes it on load.
"""

import mlflow

from taxi_duration.tracking import TripDurationPyfunc

mlflow.models.set_model(TripDurationPyfunc())
