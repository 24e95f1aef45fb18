"""Features: a preprocessor fitted on the training month and applied to any month.

Its modules, each importing only those above it:

- ``encoding``: the features' values as integer keys and numbers, and the vocabulary of a
  categorical feature (its categories seen in the training month);
- ``zone_statistics``: the training month's median duration and speed per zone and pair,
  smoothed, and out of fold for the month's own rows;
- ``preprocessor``: ``Preprocessor``, fitted on the training month, and its two encodings of a
  month (a one-hot CSR matrix, a frame of categoricals).
"""
