"""The one error type for bad input a user can fix (a file, an option, a config key).

The library raises subclasses with a message that names the culprit; the CLI prints the message on one line
and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class ReidError(ValueError):
    """Bad input: a missing or malformed file, an unknown name, an option out of range."""
