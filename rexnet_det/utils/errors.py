"""Errors shared by every floor of the package.

They live at the bottom so that a model can refuse a checkpoint without
importing the checkpoint layer that sits above it.
"""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would run code or build objects outside
    the allowlist. Nothing of it was loaded."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint that does not fit the model (keys, shapes or variant).
    Nothing of it was loaded."""
