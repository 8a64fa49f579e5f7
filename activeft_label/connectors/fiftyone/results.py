"""What the FiftyOne connector returns: the pool it pulled, the preview of a run, the summary of a push."""

from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError


@dataclass
class FiftyOnePool:
    """What :func:`pull` read from a dataset or view.

    Attributes
    ----------
    sample_ids : list of str
        One sample id per feature row.
    filepaths : list of str
        The image path of each row.
    features : np.ndarray (K, C) float32
        One embedding per row.
    fixed : np.ndarray (F,) int64
        Rows of already labeled samples (``exclude_labeled``): fixed
        centroids for the optimizer, never selected.
    skipped : list of (sample_id, filepath, reason)
        Samples of the target left out because their image could not be read.
    target_size : int
        Samples in the target view (skipped ones included).
    embeddings : str
        Where the features came from: ``"field 'F'"`` or the model name.
    embeddings_field : str or None
        The vector field read, if any.
    model, weights : str or None
        The encoder used, when features were computed.
    cached : int
        Rows that came from the embeddings cache.
    precision : str or None
        The encoder's number format (``"fp32"``, ``"bf16"``), when features
        were computed.
    """

    sample_ids: list
    filepaths: list
    features: np.ndarray
    fixed: np.ndarray
    skipped: list = field(default_factory=list)
    target_size: int = 0
    embeddings: str = ""
    embeddings_field: str = None
    model: str = None
    weights: str = None
    cached: int = 0
    precision: str = None

    def __len__(self):
        return len(self.sample_ids)

    @property
    def computed(self):
        """Whether the features were computed here (and so can be stored)."""
        return self.embeddings_field is None


@dataclass
class Preview:
    """Cheap checks of a planned run, for a form or before starting.

    Attributes
    ----------
    target_size : int
        Samples in the target.
    fixed_count : int
        Samples of the target that count as already labeled.
    budget_count : int or None
        The budget as a number of samples (None when it is not valid).
    problems : dict
        Parameter name -> message, for every check that failed (in order).
    notes : list of str
        Things worth knowing that do not stop the run (missing images, ...).
    """

    target_size: int = 0
    fixed_count: int = 0
    budget_count: int = None
    problems: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def raise_first(self):
        """Raise an :class:`InputError` with the first problem, if any."""
        for message in self.problems.values():
            raise InputError(message)


@dataclass
class SelectionSummary:
    """What :func:`select_samples` (or :func:`push`) did.

    Attributes
    ----------
    dataset : str
        Dataset name.
    run_name : str
        FiftyOne run key of the selection; also the name of the saved view.
    saved_view : str
        Saved view with the selected samples sorted by rank.
    sample_ids : list of str
        Selected sample ids, rank 1 first.
    tag, rank_field : str
    target_size, fixed_count : int
    skipped : list of (sample_id, filepath, reason)
    coverage : float
        Mean distance from each pool sample to its nearest selected or fixed
        sample (unit vectors; lower is better).
    method : str
    params : dict
        Parameters of the selection.
    elapsed : float
        Seconds for the whole run (embedding included).
    untagged : int
        Samples whose tag this run removed because they were selected by an
        earlier run of the same name and are not any more.
    untagged_tag : str
        The tag that was removed (the earlier run's, which may differ from ``tag``).
    result : SelectionResult or None
    """

    dataset: str
    run_name: str
    saved_view: str
    sample_ids: list
    tag: str
    rank_field: str
    target_size: int
    fixed_count: int = 0
    skipped: list = field(default_factory=list)
    coverage: float = float("nan")
    method: str = "activeft"
    params: dict = field(default_factory=dict)
    elapsed: float = 0.0
    untagged: int = 0
    untagged_tag: str = ""
    embeddings: str = ""
    result: object = None

    @property
    def count(self):
        return len(self.sample_ids)

    def to_dict(self):
        """JSON-ready summary (no SelectionResult)."""
        return {
            "dataset": self.dataset, "run_name": self.run_name, "saved_view": self.saved_view,
            "selected": self.count, "target_size": self.target_size, "fixed": self.fixed_count,
            "skipped": len(self.skipped), "coverage": float(self.coverage), "tag": self.tag,
            "rank_field": self.rank_field, "method": self.method, "embeddings": self.embeddings,
            "elapsed": round(float(self.elapsed), 3), "untagged": self.untagged,
        }

    def describe(self):
        """A few lines for people: what was selected and where to look."""
        details = ""
        if self.method == "activeft":
            details = f" ({self.params.get('iterations', '?')} iterations, τ = {self.params.get('temperature', '?')})"
        lines = [f"Selected {self.count} of {self.target_size} samples of dataset {self.dataset!r} with "
                 f"{self.method}{details} in {self.elapsed:.1f} s; embeddings: {self.embeddings}."]
        if self.fixed_count:
            lines.append(f"{self.fixed_count} already labeled samples were kept as fixed centroids and not selected.")
        if self.skipped:
            shown = "; ".join(f"{path}: {reason}" for _, path, reason in self.skipped[:3])
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            lines.append(f"Skipped {len(self.skipped)} sample(s) whose image could not be read: {shown}{more}.")
        lines.append(f"Coverage: {self.coverage:.4f} (mean distance from each sample to its nearest selected or "
                     f"labeled sample; lower is better).")
        lines.append(f"Tagged {self.tag!r} and ranked in field {self.rank_field!r} (1 = annotate first); "
                     f"run {self.run_name!r} recorded on the dataset.")
        if self.untagged:
            lines.append(f"Removed tag {self.untagged_tag or self.tag!r} from {self.untagged} sample(s) this run had "
                         f"selected before.")
        lines.append(f"In the App: open dataset {self.dataset!r} and load the saved view {self.saved_view!r} "
                     f"(selected samples, rank 1 first), or in Python: "
                     f"fo.load_dataset({self.dataset!r}).load_saved_view({self.saved_view!r}).")
        return "\n".join(lines)
