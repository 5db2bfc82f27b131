"""One exception type for everything a user can fix: scripts print its message on one line and exit non-zero."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, run directory). The message says what is wrong and what to do."""
