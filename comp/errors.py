"""The one exception type that reaches the user as a message instead of a traceback."""


class CompError(Exception):
    """Bad input from the user (recipe, data, arguments).

    The CLI prints ``str(err)`` on one line and exits with code 2; nothing is half-written.
    """

    exit_code = 2


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line for a one-line CompError (its type's name
    when it has no message): library errors often carry tracebacks or hints on later lines."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
