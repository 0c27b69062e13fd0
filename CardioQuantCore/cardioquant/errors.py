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


INTERRUPTED = "interrupted; nothing was written"


def interrupted(exc: BaseException | None) -> bool:
    """Ctrl-C, also when it arrived while a library was being imported: VTK's import machinery reports a
    KeyboardInterrupt as an ImportError, with the interrupt as its cause or context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
