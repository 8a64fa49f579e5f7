"""``python -m activeft_label.cli``: the same as the ``activeft`` command."""

import sys

from .main import main

sys.exit(main())
