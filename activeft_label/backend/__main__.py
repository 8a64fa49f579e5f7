"""``python -m activeft_label.backend``: the server process ``activeft labelstudio serve`` starts."""

import sys

from .server import main

sys.exit(main())
