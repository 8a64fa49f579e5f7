"""What to select with: the method and its settings, as one object every face builds once and passes down."""

from dataclasses import asdict, dataclass
from typing import Optional, Union

from . import DEFAULT_LOSS


@dataclass(frozen=True)
class SelectionOptions:
    """The settings of a selection, everything but the budget and the device.

    Parameters
    ----------
    method : str, default="activeft"
        ``"activeft"``, ``"bilaf"`` or a baseline (see :data:`activeft_label.METHODS`).
    loss : {"released", "paper"}, default="released"
        ActiveFT loss form.
    iterations : int, default=300
        ActiveFT optimisation steps (Adam).
    temperature : float, default=0.07
        ActiveFT temperature τ.
    lr : float, default=1e-3
        Adam learning rate.
    seed : int, default=0
        Same seed and device give the same selection.
    center : bool, default=False
        Compare items after subtracting the pool's mean direction.
    minibatch, balance : optional
        ActiveFT only: rows per step on very large pools; weight of the loss's
        second term.  ``None`` leaves :func:`activeft_label.select`'s default.
    cores : int, float or str, optional
        BiLAF only: the core samples K (a count, a fraction of the pool or a
        percentage like ``"0.5%"``).  ``None`` leaves the default (see
        :func:`activeft_label.select`).
    update : {"projected", "released"}, optional
        ActiveFT and BiLAF's core stage: how θ is updated (renormalised after
        each step, or raw as in the released code).  ``None`` leaves the
        default (``"projected"``).

    The method and loss form are checked where they are used
    (:func:`activeft_label.select`), like every other parameter.
    """

    method: str = "activeft"
    loss: str = DEFAULT_LOSS
    iterations: int = 300
    temperature: float = 0.07
    lr: float = 1e-3
    seed: int = 0
    center: bool = False
    minibatch: Optional[int] = None
    balance: Optional[float] = None
    cores: Optional[Union[int, float, str]] = None
    update: Optional[str] = None

    def as_kwargs(self):
        """Keyword arguments of :func:`activeft_label.select` (and of the connectors' selection functions).

        ``minibatch``, ``balance``, ``cores`` and ``update`` are left out while they are ``None``.
        """
        kwargs = asdict(self)
        for optional in ("minibatch", "balance", "cores", "update"):
            if kwargs[optional] is None:
                del kwargs[optional]
        return kwargs


__all__ = ["SelectionOptions"]
