"""Errors vaereg raises on purpose; anything else is a bug."""


class VaeregError(Exception):
    """A failure vaereg explains in one line."""


class UsageError(VaeregError):
    """Bad input from the user (a combo, a data set, an option): the CLI exits with code 2."""
