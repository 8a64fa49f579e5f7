"""Selection of the items to annotate: ActiveFT, BiLAF and the baselines, one interface.

The public entry point is :func:`select`; the optimizer itself lives in
:mod:`.activeft`, BiLAF (ActiveFT cores plus boundary picks) in :mod:`.bilaf`,
the baselines in :mod:`.baselines`, the priority order in
:mod:`.ranking`, the settings every face passes down in :mod:`.options`
(:class:`SelectionOptions`).  Nothing here knows where features came from.
"""

#: Selection methods: ActiveFT, BiLAF (ActiveFT cores + boundary samples) and the baselines.
METHODS = ("activeft", "bilaf", "random", "kmeans", "coreset", "probcover", "typiclust")
#: Methods that run the ActiveFT optimizer (BiLAF for its core samples).
ACTIVEFT_METHODS = ("activeft", "bilaf")
#: ActiveFT loss forms (see :mod:`.activeft`).
LOSS_FORMS = ("released", "paper")
DEFAULT_LOSS = "released"
#: ActiveFT updates of θ (see :mod:`.activeft`): renormalised after each step, or raw as in the released code.
UPDATE_FORMS = ("projected", "released")
DEFAULT_UPDATE = "projected"

__all__ = ["select", "SelectionResult", "SelectionOptions", "METHODS", "ACTIVEFT_METHODS", "LOSS_FORMS",
           "DEFAULT_LOSS", "UPDATE_FORMS", "DEFAULT_UPDATE", "resolve_device", "check_features", "unit_rows"]

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
