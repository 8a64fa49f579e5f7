"""The ``activeft`` command line: a thin face over the library, one module per command group.

:mod:`.main` holds the root group and its commands (select, embed, demo) and
adds the groups :mod:`.fiftyone`, :mod:`.labelstudio`, :mod:`.sync` and
:mod:`.evaluate` with plain imports; :mod:`.options` holds what they share
(option groups, error handling).  Every command validates its options first,
does the work, and writes its outputs only at the end (atomically).  Errors
the user can fix are one line on stderr with exit status 2; environment
problems exit 1; no tracebacks.  FiftyOne, the Label Studio SDK and torch are
imported inside the commands, so ``activeft --help`` stays fast.
"""

from .main import main

__all__ = ["main"]
