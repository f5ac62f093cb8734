"""The errors the scripts report without a traceback."""


class UsageError(Exception):
    """Bad flags or settings: reported on stderr with exit code 2."""


class TrainingFailed(Exception):
    """Training stopped on a non-finite loss: exit code 1, no results."""
