"""Features: a preprocessor fitted on the training month and applied to any month.

Its modules, each importing only those above it:

- ``encoding``: the features' values as integer keys and numbers, and the vocabulary of a
  categorical feature (its categories seen in the training month);
- ``zone_statistics``: the training month's median duration and speed per zone and pair,
  smoothed, and out of fold for the month's own rows;
- ``preprocessor``: ``Preprocessor``, fitted on the training month, and its two encodings of a
  month (a one-hot CSR matrix, a frame of categoricals).
"""

# Model versions registered before the package was split pickled their preprocessor's classes
# as ``taxi_duration.features.<Class>``: unpickling them in a process that has imported this
# package (serve, predict, monitor, promote) asks this module for those names.
_PICKLED_BEFORE_THE_SPLIT = {
    "Factorized": "encoding",
    "Vocabulary": "encoding",
    "GroupMedians": "zone_statistics",
    "ZoneStatistics": "zone_statistics",
    "TrainingStatistics": "zone_statistics",
    "Preprocessor": "preprocessor",
}


def __getattr__(name: str) -> object:
    """A class pickled under its old path, from the module that holds it now."""
    module = _PICKLED_BEFORE_THE_SPLIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
