"""FiftyOne plugin of activeft-label: the "ActiveFT: select samples to annotate" operator.

Thin on purpose: the operator and everything it does live in the installed
``activeft_label`` package (``activeft_label.connectors.fiftyone_operator``),
so upgrading the package upgrades the operator.  Install this folder with
``activeft fiftyone install-plugin``.
"""

try:
    from activeft_label.connectors.fiftyone_operator import register
except ImportError as exc:  # the App's Python lacks the package: say how to fix it
    raise ImportError(
        f"the activeft plugin needs the activeft_label package in the FiftyOne App's Python environment "
        f"({exc}); install it with: pip install 'activeft-label[fiftyone]'"
    ) from exc

__all__ = ["register"]
