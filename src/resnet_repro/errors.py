"""One exception type for everything a user can fix: scripts print its message on one line and exit non-zero."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, run directory). The message says what is wrong and what to do."""


# How to put a run elsewhere, in words that work with every command that starts one: run_root= moves a single run
# and a sweep (-m) alike (hydra.run.dir does not apply under -m), and the make targets pass theirs on to it.
ANOTHER_PLACE = "another run_root=DIR (make: RUN_ROOT=DIR, or SMOKE_OUT=DIR with PROFILE=smoke)"
