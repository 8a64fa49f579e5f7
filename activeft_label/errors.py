"""Exceptions raised by activeft-label.

Every error that a user can cause (bad budget, empty folder, broken features
file, unknown model, ...) is an :class:`InputError`: the command line turns it
into one line on stderr and exit status 2, without a traceback.  Problems of
the environment that the user has to fix elsewhere (no network for a
download, a server that does not answer) are :class:`ActiveFTError` and exit
with status 1, also without a traceback.
"""


class ActiveFTError(Exception):
    """An expected failure with a message that says what to do."""

    exit_code = 1


class InputError(ActiveFTError, ValueError):
    """The caller passed something unusable; the message names the fix."""

    exit_code = 2
