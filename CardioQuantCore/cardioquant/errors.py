"""Error types. Each maps to one command-line exit code, so callers never parse messages."""


class CardioQuantError(Exception):
    """Base class for every error this package raises on purpose."""

    exit_code = 3


class InputError(CardioQuantError):
    """The input (file, volume, option, weights) is unusable. Message says what is wrong and what to do."""

    exit_code = 2


class ProcessingError(CardioQuantError):
    """Valid input, but a processing step failed."""

    exit_code = 3


class CancelledError(CardioQuantError):
    """The user pressed Cancel; nothing was written."""

    exit_code = 3
