"""Errors a user can fix. The CLI prints them as one line (exit 2); widgets show one notification.

Every message says what was wrong and what to do about it. Anything else that escapes is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, files or environment (not a bug in napari-cvdm)."""


class InputError(UserError, ValueError):
    """An image or parameter that cannot be used.

    For example: wrong dimensionality, NaN/Inf, empty or unreadable.
    """


class ModelFileError(UserError):
    """A model file that is missing, truncated, tampered with or has an invalid metadata header."""


class DeviceError(UserError):
    """A compute device that was asked for but is not available in this torch build/machine."""
