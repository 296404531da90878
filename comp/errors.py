"""The one exception type that reaches the user as a message instead of a traceback."""


class CompError(Exception):
    """Bad input from the user (recipe, data, arguments).

    The CLI prints ``str(err)`` on one line and exits with code 2; nothing is half-written.
    """

    exit_code = 2
