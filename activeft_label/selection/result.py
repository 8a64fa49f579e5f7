"""The result object every selection method returns."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SelectionResult:
    """What a selection run produced.

    Attributes
    ----------
    method : str
        ``"activeft"`` or a baseline name.
    indices : np.ndarray (B,)
        Selected rows of the pool, in the method's own order (not rank order).
    ranks : np.ndarray (B,)
        Annotation priority of each entry of ``indices``: a permutation of
        1..B, rank 1 = annotate first.  Every prefix of the ranking is itself
        a good selection (see :mod:`activeft_label.selection.ranking`).
    cluster_sizes : np.ndarray (B,)
        Pool samples whose nearest selected (or already labeled) item is this
        one, in the order of ``indices``: ``cluster_sizes[k]`` belongs to
        ``indices[k]``.  Pair it with ``indices``, never with
        ``ranked_indices``; in rank order use ``ranked_cluster_sizes``.
    coverage : float
        Mean over the pool of sqrt(2 - 2·sim) to the nearest selected or
        already labeled item (Euclidean distance of unit vectors; lower is better).
    loss : float or None
        ActiveFT loss of the final centroids (``None`` for baselines).
    loss_history : list of float
        ActiveFT loss before each optimisation step (empty for baselines).
    seed : int
    params : dict
        The parameters of the run (method, loss form, τ, lr, iterations, ...).
    elapsed : float
        Seconds spent selecting (ranking and coverage included).

    In rank order (rank 1 first), use the properties ``ranked_indices`` and
    ``ranked_cluster_sizes``, which pair entry by entry; :meth:`records`
    gives one dict per item in that order.
    """

    method: str
    indices: np.ndarray
    ranks: np.ndarray
    cluster_sizes: np.ndarray
    coverage: float
    loss: object = None
    loss_history: list = field(default_factory=list)
    seed: int = 0
    params: dict = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def budget(self):
        return int(self.indices.size)

    @property
    def ranked_indices(self):
        """Selected rows sorted by rank (rank 1 first); their cluster sizes are :attr:`ranked_cluster_sizes`."""
        return self.indices[np.argsort(self.ranks, kind="stable")]

    @property
    def ranked_cluster_sizes(self):
        """:attr:`cluster_sizes` sorted by rank: ``ranked_cluster_sizes[k]`` belongs to ``ranked_indices[k]``."""
        return self.cluster_sizes[np.argsort(self.ranks, kind="stable")]

    def records(self, ids=None, paths=None, source_index=None):
        """One dict per selected item, sorted by rank: rank, index, id, path, cluster_size.

        ``ids`` and ``paths`` are indexed by feature row; ``source_index``
        optionally maps a feature row to the item's position in its source
        listing (when unreadable items were left out), reported as ``index``.
        """
        order = np.argsort(self.ranks, kind="stable")
        rows = []
        for pos in order:
            index = int(self.indices[pos])
            rows.append({
                "rank": int(self.ranks[pos]),
                "index": int(source_index[index]) if source_index is not None else index,
                "id": str(ids[index]) if ids is not None else str(index),
                "path": str(paths[index]) if paths is not None else "",
                "cluster_size": int(self.cluster_sizes[pos]),
            })
        return rows
