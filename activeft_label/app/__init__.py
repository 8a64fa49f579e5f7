"""The FiftyOne App face: the operators and the plugin that registers them.

:mod:`.select_operator` (``select_samples``) and :mod:`.sync_operators`
(``push_to_labelstudio``, ``pull_from_labelstudio``) are forms over
:mod:`activeft_label.connectors.fiftyone` and :mod:`activeft_label.sync`;
:mod:`.progress` is how their immediate runs report progress and show their
result in the App (FiftyOne's generator execution), :mod:`.forms` what the
forms share (the note on how a scheduled run executes).
``plugin/`` (``fiftyone.yml`` and a thin ``__init__.py``) ships inside the
package; ``activeft fiftyone install-plugin`` copies it into FiftyOne's
plugins directory, and :func:`register` is what its ``__init__.py`` calls.
Importing this package needs FiftyOne.
"""

from .select_operator import SelectSamples
from .sync_operators import PullFromLabelStudio, PushToLabelStudio


def register(plugin):
    """Register the three operators with a FiftyOne plugin."""
    plugin.register(SelectSamples)
    plugin.register(PushToLabelStudio)
    plugin.register(PullFromLabelStudio)


__all__ = ["SelectSamples", "PushToLabelStudio", "PullFromLabelStudio", "register"]
