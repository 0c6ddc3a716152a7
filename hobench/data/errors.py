"""The one exception the data layer raises."""


class DataError(Exception):
    """A dataset is missing, damaged or misused.

    The message is always one line that names the problem and how to fix it, so it reads well
    in a CLI error and in a CI log.
    """


def one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line, for embedding in a DataError."""
    return " ".join(str(exc).split()) or type(exc).__name__
