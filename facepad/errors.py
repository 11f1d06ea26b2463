"""Exceptions for problems caused by user input.

Every subclass of `FacepadError` carries a message that fits on one line and states what
failed, on which value, and what to do. The command-line interface prints that line and
exits with status 2 instead of showing a traceback.
"""


class FacepadError(Exception):
    """Base class for errors caused by user input (files, photos, configs, checkpoints)."""


class ImageError(FacepadError):
    """A file is missing, empty, truncated or not an image."""


class FaceError(FacepadError):
    """A photo has no usable face: none found, too small, or turned too far."""


class ConfigError(FacepadError):
    """A config file or a `--set` override is invalid."""


class ManifestError(FacepadError):
    """A manifest CSV is missing columns or contains invalid values."""


class CheckpointError(FacepadError):
    """A checkpoint file is missing, corrupt, unsafe or incompatible."""


def strip_path_prefix(message: str, path: str) -> str:
    """Return `message` without a leading "PATH: ", for lists that already show the path."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
