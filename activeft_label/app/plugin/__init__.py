"""FiftyOne plugin of activeft-label: select samples to annotate, and sync them with Label Studio.

Operators: ``select_samples`` ("ActiveFT: select samples to annotate"),
``push_to_labelstudio`` and ``pull_from_labelstudio``.  Thin on purpose: the
operators and everything they do live in the installed ``activeft_label``
package (:mod:`activeft_label.app`), so upgrading the package upgrades the
operators.  Install it with ``activeft fiftyone install-plugin``.
"""

try:
    from activeft_label.app import register as _register
except ImportError as exc:  # the App's Python lacks the package: say how to fix it
    raise ImportError(
        f"the activeft plugin needs the activeft_label package in the FiftyOne App's Python environment "
        f"({exc}); install it with: pip install 'activeft-label[fiftyone]'"
    ) from exc


def register(plugin):
    """Register the selection operator and the Label Studio sync operators."""
    _register(plugin)


__all__ = ["register"]
