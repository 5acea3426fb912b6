"""The kit's error types: each names the file, row or key at fault and what was expected.

Command-line entry points catch ``KitError`` and exit with its message; any
other exception is a bug and keeps its traceback.
"""


class KitError(ValueError):
    """A bad input or artifact, reported to the user without a traceback."""


class ConfigError(KitError):
    """A config file or override that does not describe a valid experiment."""


class DatasetError(KitError):
    """The dataset directory does not follow the competition layout."""


class ArtifactError(KitError):
    """An artifact that is missing, malformed, or belongs to other folds or data."""


class LockedError(KitError):
    """Another process holds what this one needs (a fold being trained, a cache being built)."""
