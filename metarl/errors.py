"""Errors that reach the user as a one-line message and exit code 2 (bad usage or input)."""


class UsageError(Exception):
    """Bad usage, configuration, checkpoint or data: the command line prints it and exits 2."""


class ConfigError(UsageError):
    """A configuration key or value is wrong; the message names the key and what was expected."""
