"""Selection of the items to annotate: ActiveFT and the baselines, one interface.

The public entry point is :func:`select`; the optimizer itself lives in
:mod:`.activeft`, the baselines in :mod:`.baselines`, the priority order in
:mod:`.ranking`, the settings every face passes down in :mod:`.options`
(:class:`SelectionOptions`).  Nothing here knows where features came from.
"""

#: Selection methods: ActiveFT and the baselines.
METHODS = ("activeft", "random", "kmeans", "coreset", "probcover", "typiclust")
#: ActiveFT loss forms (see :mod:`.activeft`).
LOSS_FORMS = ("released", "paper")
DEFAULT_LOSS = "released"

__all__ = ["select", "SelectionResult", "SelectionOptions", "METHODS", "LOSS_FORMS", "DEFAULT_LOSS",
           "resolve_device", "check_features", "unit_rows"]

# The rest needs torch: loaded on first use (PEP 562), so the constants above come without it.
_LAZY = {"select": ".api", "SelectionResult": ".result", "SelectionOptions": ".options", "resolve_device": "..devices",
         "check_features": "._common", "unit_rows": "._common"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
