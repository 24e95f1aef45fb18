"""Features: a preprocessor fitted on the training month and applied to any month; the
preprocessor is in ``preprocessor``."""
