"""Error types: every failure a user can cause ends in one of these, with a one-line message."""


class UlicError(Exception):
    """Base class of all errors ulic reports to users."""


class InputImageError(UlicError):
    """The input image cannot be read or is outside the supported range."""


class BitstreamError(UlicError):
    """The .ulic file is truncated, corrupted or not a ulic file."""


class ModelMismatchError(BitstreamError):
    """The file was made with a model that is not loaded here."""


class WeightsError(UlicError):
    """Model weights are missing, corrupt or do not match their config."""


class OutputError(UlicError):
    """An output cannot be written, or writing it would destroy something (the input, a device,
    other hard links to the replaced file)."""
