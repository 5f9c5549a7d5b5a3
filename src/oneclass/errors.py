"""Errors that the CLI reports as one clear line (no traceback unless --debug)."""


class OneClassError(Exception):
    """Base of every error that names a user-facing problem."""


class DataError(OneClassError, ValueError):
    """Input data that cannot be used: wrong shape, NaN, corrupt or missing file, unknown name."""


class ModelFileError(OneClassError, ValueError):
    """A model file that is corrupt, truncated, foreign or from an incompatible version."""


class ChecksumError(DataError):
    """A downloaded or found file whose checksum differs from the published one."""


class NotFittedError(OneClassError, RuntimeError):
    """A detector used before `fit` (or before `set_threshold` for `predict`)."""


class UndertrainingWarning(UserWarning):
    """A fit that makes far fewer optimisation steps than its preset was set for (a small
    training set at the preset's batch size): the model may be barely trained."""
