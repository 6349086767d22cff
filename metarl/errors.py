"""Errors that reach the user as a one-line message: exit code 2 for bad usage or input, 1
for a run that failed."""


class UsageError(Exception):
    """Bad usage, configuration, checkpoint or data: the command line prints it and exits 2."""


class ConfigError(UsageError):
    """A configuration key or value is wrong; the message names the key and what was expected."""


class RunFailed(Exception):
    """Training could not go on (e.g. a diverging inner step); the command line prints it and
    exits 1, the last checkpoint left as it was."""


class WorkersLost(RunFailed):
    """Rollout workers kept dying: more replacements in one iteration than allowed. The
    iteration never reached its update, so the trainer checkpoints the iterations done."""
