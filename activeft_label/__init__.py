"""activeft-label: pick the few items worth annotating, ActiveFT-style, and hand
them to the annotation tools in priority order.

Public API::

    from activeft_label import select, embed_images, parse_budget

    result = select(features, "1%")            # ActiveFT, released loss form
    result.ranked_indices                      # rows to annotate, rank 1 first

The house, imports flowing one way (each layer imports only the ones below it)::

    cli/, app/                 the command line and the FiftyOne App operators (faces)
    sync/                      FiftyOne <-> Label Studio: the only code that knows both tools
    connectors/fiftyone/       a dataset or view in, tags, ranks and a saved view out
    connectors/labelstudio/    a project's tasks in, a prioritized queue out
    evaluation/, files/        the linear probe and the map; local folders, lists and output files
    selection/, embeddings/    ActiveFT and the baselines; encoders and the feature cache
    devices, budget, errors    shared by every layer
"""

from ._version import __version__
from .budget import parse_budget
from .errors import ActiveFTError, InputError
from .selection import METHODS


def __getattr__(name):
    # select and SelectionResult need torch: loaded on first use, so `activeft --help` stays fast.
    if name in ("select", "SelectionResult"):
        from . import selection

        return getattr(selection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def embed_images(*args, **kwargs):
    """Embed image files; see :func:`activeft_label.embeddings.embed_images`."""
    from .embeddings import embed_images as _embed

    return _embed(*args, **kwargs)


__all__ = ["select", "embed_images", "parse_budget", "SelectionResult", "METHODS", "ActiveFTError", "InputError",
           "__version__"]
