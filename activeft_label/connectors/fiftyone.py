"""FiftyOne connector: pick the samples of a dataset or view worth annotating.

Three steps, each a function of its own, and one function that runs them:

:func:`pull`
    Reads a dataset or view: sample ids, filepaths and one embedding per
    sample, either from an existing vector field (``embeddings_field``, such
    as one written by ``compute_embeddings()`` or FiftyOne Brain) or computed
    here with :func:`activeft_label.embeddings.embed_images`.  Samples that
    already carry a label field or a tag (``exclude_labeled``) become *fixed*
    rows: the optimizer treats them as already labeled and never selects
    them.  Samples whose image cannot be read are skipped and reported.
:func:`push`
    Writes a selection back: tags the selected samples (``tag``), writes an
    integer rank field (``rank_field``, 1 = annotate first), records the run
    on the dataset as a FiftyOne run named ``run_name`` (method, budget,
    parameters, time; the selected ids are its results) and saves a view of
    the same name with the selected samples sorted by rank.  Re-running a run
    name replaces what that run wrote before: the tag is removed from the
    samples the run had tagged and that are no longer selected, and their
    rank is unset.  Tags the run did not add, other fields, other tags and
    labels are never touched.
:func:`select_samples`
    :func:`preview` (every check that can be made without reading vectors or
    images) → :func:`pull` → :func:`activeft_label.select` → :func:`push`.
    Everything is validated before anything is written: when it raises,
    the dataset is as it was.

The command line (``activeft fiftyone select``) and the App operator
(``plugin/``) are thin faces over these functions.  Nothing here knows about
other annotation tools, and the selection library knows nothing of FiftyOne.

Examples
--------
>>> import fiftyone as fo
>>> from activeft_label.connectors import fiftyone as aft
>>> dataset = fo.load_dataset("my-images")
>>> summary = aft.select_samples(dataset, "1%")
>>> print(summary.describe())
>>> ranked = dataset.load_saved_view(summary.saved_view)   # rank 1 first
"""

import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

import fiftyone as fo
import fiftyone.core.utils as fou

from .. import __version__
from ..budget import parse_budget
from ..errors import InputError

DEFAULT_TAG = "activeft"
DEFAULT_RANK_FIELD = "activeft_rank"
DEFAULT_RUN_NAME = "activeft"

#: Marker stored in every run config this connector writes (tells our runs from other runs).
RUN_MARKER = "activeft_label"

#: Fields FiftyOne manages itself; never written here.
_RESERVED_FIELDS = frozenset({"id", "_id", "filepath", "tags", "metadata", "created_at", "last_modified_at",
                              "media_type", "_media_type", "_rand", "_dataset_id", "frames"})

#: Run names: also FiftyOne run keys and saved-view names (ASCII, so that FiftyOne's URL form of the name is not empty).
_RUN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")

#: Images embedded per call when progress is reported (the encoder is loaded once).
_PROGRESS_CHUNK = 64

__all__ = ["DEFAULT_TAG", "DEFAULT_RANK_FIELD", "DEFAULT_RUN_NAME", "FiftyOnePool", "Preview", "SelectionSummary",
           "resolve_view", "preview", "pull", "push", "write_embeddings", "select_samples", "get_run", "list_runs",
           "embedding_fields", "label_fields", "LabelWriteReport", "write_labels", "check_label_field"]


# --------------------------------------------------------------------------------------------------------------
# Result types


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


# --------------------------------------------------------------------------------------------------------------
# Finding the target


def resolve_view(dataset, saved_view=None, view_stages=None):
    """Load a dataset by name and, optionally, a saved view or view stages.

    Parameters
    ----------
    dataset : str or fiftyone.core.dataset.Dataset
        Dataset name (or the dataset itself).
    saved_view : str, optional
        Name of a saved view of the dataset.
    view_stages : str or list, optional
        View stages as JSON (a list of serialized stages, as the App's
        "copy view as JSON" or ``view._serialize()`` give), applied after the
        saved view.

    Returns
    -------
    (Dataset, SampleCollection)
    """
    if isinstance(dataset, str):
        name = dataset
        if not fo.dataset_exists(name):
            names = fo.list_datasets()
            import difflib

            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                f"; datasets here: {', '.join(repr(n) for n in names[:10])}" + (" ..." if len(names) > 10 else "")
                if names else "; this database has no datasets")
            raise InputError(f"no FiftyOne dataset named {name!r}{hint} (database: {fo.config.database_dir})")
        dataset = fo.load_dataset(name)
    view = dataset.view()
    if saved_view is not None and not str(saved_view).strip():
        raise InputError("the saved view name is empty; give a saved view's name or leave the option out")
    if view_stages is not None and isinstance(view_stages, str) and not view_stages.strip():
        raise InputError("the view stages are empty; give a JSON list of stages or leave the option out")
    if saved_view:
        saved = dataset.list_saved_views()
        if saved_view not in saved:
            listed = ", ".join(repr(s) for s in saved) if saved else "none"
            raise InputError(f"dataset {dataset.name!r} has no saved view named {saved_view!r} (saved views: {listed})")
        try:
            view = dataset.load_saved_view(saved_view)
        except Exception as exc:  # a view saved before the fields it uses were deleted, ...
            raise InputError(f"saved view {saved_view!r} of dataset {dataset.name!r} cannot be loaded any more "
                             f"({_short(exc)}); fix or delete it in the App, or pick another view") from None
    if view_stages:
        stages = view_stages
        if isinstance(stages, str):
            try:
                stages = json.loads(stages)
            except ValueError as exc:
                raise InputError(f"view stages are not valid JSON ({exc}); give a JSON list of stages like "
                                 f"'[{{\"_cls\": \"fiftyone.core.stages.Limit\", \"kwargs\": [[\"limit\", 10]]}}]'"
                                 ) from None
        if isinstance(stages, dict):
            stages = [stages]
        if not isinstance(stages, list):
            raise InputError("view stages must be a JSON list of serialized stages")
        for stage in stages:
            _check_stage(stage)
        try:
            built = fo.DatasetView._build(dataset, view._serialize() + stages)
            len(built)  # runs the pipeline: a stage that does not fit the dataset fails here
        except Exception as exc:  # FiftyOne raises many types for bad stages
            raise InputError(f"the view stages cannot be applied to dataset {dataset.name!r}: {_short(exc)}") from None
        view = built
    return dataset, view


def _check_stage(stage):
    """Refuse anything but a serialized FiftyOne view stage.

    FiftyOne builds a stage by importing the class named in ``_cls`` and calling it with ``kwargs``: without this
    check, JSON from the command line could name any importable callable.
    """
    import fiftyone.core.stages as fos

    example = '{"_cls": "fiftyone.core.stages.Limit", "kwargs": [["limit", 10]]}'
    if not isinstance(stage, dict) or not isinstance(stage.get("_cls"), str) or "kwargs" not in stage:
        raise InputError(f"each view stage must be a JSON object with '_cls' and 'kwargs', like {example}; "
                         f"got {json.dumps(stage)[:80]}")
    module, _, name = stage["_cls"].rpartition(".")
    cls = getattr(fos, name, None) if module == "fiftyone.core.stages" else None
    if not (isinstance(cls, type) and issubclass(cls, fos.ViewStage) and cls is not fos.ViewStage):
        raise InputError(f"{stage['_cls']!r} is not a FiftyOne view stage; stages are named like "
                         f"'fiftyone.core.stages.Match' (the App's \"copy view as JSON\" gives them)")
    kwargs = stage["kwargs"]
    if not (isinstance(kwargs, list) and all(isinstance(k, list) and len(k) == 2 and isinstance(k[0], str)
                                             for k in kwargs)):
        raise InputError(f"the kwargs of view stage {stage['_cls']!r} must be a list of [name, value] pairs, like "
                         f"{example}")


def _slug_or_none(name):
    try:
        return fou.to_slug(name)
    except ValueError:
        return None


def _root(collection):
    return collection._root_dataset if hasattr(collection, "_root_dataset") else collection


def embedding_fields(collection):
    """Names of the top-level fields that can hold embeddings (vector, array or list-of-number fields)."""
    names = []
    for name, fld in collection.get_field_schema().items():
        if name in _RESERVED_FIELDS or name.startswith("_"):
            continue
        if _holds_vectors(fld):
            names.append(name)
    return names


def _holds_vectors(fld):
    """Whether a field can hold embeddings: a vector or array field, or a list of numbers."""
    if isinstance(fld, (fo.VectorField, fo.ArrayField)):
        return True
    return isinstance(fld, fo.ListField) and isinstance(getattr(fld, "field", None), (fo.FloatField, fo.IntField))


def label_fields(collection):
    """Names of the top-level fields that hold labels (Classification, Detections, ...)."""
    names = []
    for name, fld in collection.get_field_schema().items():
        if isinstance(fld, fo.EmbeddedDocumentField) and issubclass(fld.document_type, fo.Label):
            names.append(name)
    return names


# --------------------------------------------------------------------------------------------------------------
# Checks


def _check_target(collection):
    media = getattr(collection, "media_type", None)
    if getattr(collection, "_is_generated", False):
        raise InputError("the target is a generated view (patches, frames or clips); select from the dataset or a "
                         "view of its samples instead")
    if media == "group":
        raise InputError("the target is a grouped dataset; pick a slice first, e.g. "
                         "view.select_group_slices('left'), or set the App's group slice")
    if media not in (None, "image"):
        raise InputError(f"the target holds {media} samples; only image datasets can be selected from")


def _check_identifier(kind, value, option):
    if not isinstance(value, str) or not value.strip():
        return f"{kind} must be a non-empty name (set {option})"
    if value != value.strip():
        return f"{kind} {value!r} starts or ends with spaces; remove them"
    return None


def _runs_of(dataset):
    """{run key: config dict} of the runs this connector wrote on ``dataset``."""
    runs = {}
    for key in dataset.list_runs():
        try:
            config = dataset.get_run_info(key).config
        except Exception:
            continue
        values = config.serialize() if hasattr(config, "serialize") else dict(vars(config))
        if values.get(RUN_MARKER):
            runs[key] = values
    return runs


def _field_written_by_us(runs, name, kinds):
    return any(cfg.get(kind) == name for cfg in runs.values() for kind in kinds)


def _check_writable_field(dataset, name, option, what, expected, runs, kinds):
    """Message if ``name`` cannot be written as ``what``, else None."""
    message = _check_identifier(what, name, option)
    if message:
        return message
    if name in _RESERVED_FIELDS or name.startswith(("_", "$")) or "." in name:
        return (f"{what} {name!r} is a field FiftyOne manages itself, a nested path, or a name FiftyOne cannot store "
                f"(starting with '$'); choose another {option}")
    schema = dataset.get_field_schema()
    if name not in schema:
        return None
    fld = schema[name]
    if not isinstance(fld, expected):
        return (f"field {name!r} already exists as a {type(fld).__name__}, not a place for the {what}; choose "
                f"another {option}")
    if not _field_written_by_us(runs, name, kinds) and dataset.count(name) > 0:
        return (f"field {name!r} already holds {dataset.count(name)} values that activeft did not write; choose "
                f"another {option} so they are not overwritten")
    return None


def _exclusion_rules(collection, exclude_labeled):
    """Turn ``exclude_labeled`` into [(kind, name)]; raises InputError for unknown names."""
    if exclude_labeled is None or exclude_labeled == "" or exclude_labeled == []:
        return []
    items = [exclude_labeled] if isinstance(exclude_labeled, str) else list(exclude_labeled)
    schema = collection.get_field_schema()
    rules = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(f"exclude_labeled entries must be field names or 'tag:NAME', got {item!r}")
        item = item.strip()
        if item.startswith("tag:"):
            tag = item[4:].strip()
            if not tag:
                raise InputError("exclude_labeled 'tag:' needs a tag name, like 'tag:annotated'")
            rules.append(("tag", tag))
        elif item.split(".")[0] in schema:
            if "." in item and collection.get_field(item) is None:
                raise InputError(f"exclude_labeled: {item!r} names no field of the dataset (its first part, "
                                 f"{item.split('.')[0]!r}, exists); check the spelling of the rest")
            rules.append(("field", item))
        else:
            fields = ", ".join(label_fields(collection) or [n for n in schema if n not in _RESERVED_FIELDS][:8])
            raise InputError(f"exclude_labeled: {item!r} is not a field of the dataset (label fields: "
                             f"{fields or 'none'}); write 'tag:NAME' to exclude samples that carry a tag")
    return rules


def _labeled_mask(collection, rules):
    """Boolean array over ``collection`` (in its order): samples that count as already labeled."""
    n = len(collection)
    mask = np.zeros(n, dtype=bool)
    for kind, name in rules:
        if kind == "tag":
            tags = collection.values("tags")
            mask |= np.array([name in (t or []) for t in tags], dtype=bool)
        else:
            values = collection.values(name)
            mask |= np.array([_has_value(v) for v in values], dtype=bool)
    return mask


def _has_value(value):
    if value is None:
        return False
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return True


def preview(collection, budget=None, *, embeddings_field=None, exclude_labeled=None, tag=DEFAULT_TAG,
            rank_field=DEFAULT_RANK_FIELD, run_name=DEFAULT_RUN_NAME, store_embeddings=None, check_files=False,
            check_vectors=False):
    """Check a planned run without writing anything; collect every problem.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The target.
    budget : int or str, optional
        A count (``50``) or a percentage of the target (``"5%"``).
    embeddings_field : str, optional
        Vector field to read the embeddings from (else they will be computed).
    exclude_labeled : str or list of str, optional
        Field names (a sample that has a value counts as labeled) or
        ``"tag:NAME"`` (a sample that carries the tag counts as labeled).
    tag, rank_field, run_name : str
        Where the selection will be written (see :func:`push`).
    store_embeddings : str, optional
        Field the computed embeddings will be stored into.
    check_files : bool, default=False
        Also count the images that are missing on disk (a note, not a problem).
    check_vectors : bool, default=False
        Also read ``embeddings_field`` and check every vector (missing values,
        mixed lengths, NaN).  Without it only missing values are counted.

    Returns
    -------
    Preview
    """
    report = Preview()
    problems = report.problems
    try:
        _check_target(collection)
    except InputError as exc:
        problems["view_target"] = str(exc)
        return report
    dataset = _root(collection)
    report.target_size = n = len(collection)
    if n == 0:
        problems["view_target"] = ("the target view is empty: there is nothing to select from; widen the view or "
                                   "pick another target")

    runs = _runs_of(dataset)
    existing = runs.get(run_name) if isinstance(run_name, str) else None
    message = _check_identifier("the run name", run_name, "run_name")
    if message is None and not _RUN_NAME.fullmatch(run_name):
        message = (f"run name {run_name!r} must start with a letter and hold only letters a-z, digits and "
                   f"underscores (at most 100 characters), like 'activeft_round2'")
    if message is None and dataset.has_run(run_name) and existing is None:
        message = (f"dataset {dataset.name!r} already has a run {run_name!r} that activeft did not write; pick "
                   f"another run name")
    if message is None and run_name in dataset.list_saved_views() and existing is None:
        message = (f"dataset {dataset.name!r} already has a saved view named {run_name!r} that activeft did not "
                   f"write; pick another run name")
    if message is None:
        # FiftyOne keys saved views by a URL form of the name ('a_b', 'a b' and 'A-B' are all 'a-b') and overwrites
        # any view of the same URL form.
        slug = fou.to_slug(run_name)
        clash = [v for v in dataset.list_saved_views() if v != run_name and _slug_or_none(v) == slug]
        if clash:
            message = (f"dataset {dataset.name!r} has a saved view {clash[0]!r} that FiftyOne would overwrite with "
                       f"the view of run {run_name!r} (the same URL name {slug!r}); pick another run name")
    if message:
        problems["run_name"] = message
    message = _check_identifier("the tag", tag, "tag")
    if message:
        problems["tag"] = message
    message = _check_writable_field(dataset, rank_field, "rank_field", "rank field", (fo.IntField,), runs,
                                    ("rank_field",))
    if message:
        problems["rank_field"] = message

    rules = []
    try:
        rules = _exclusion_rules(collection, exclude_labeled)
    except InputError as exc:
        problems["exclude_labeled"] = str(exc)
    if n and rules:
        report.fixed_count = int(_labeled_mask(collection, rules).sum())

    if embeddings_field is not None:
        schema = collection.get_field_schema()
        if embeddings_field not in schema:
            candidates = embedding_fields(collection)
            listed = ", ".join(repr(c) for c in candidates) if candidates else "none"
            problems["embeddings_field"] = (f"the target has no field {embeddings_field!r} (vector fields: {listed}); "
                                            f"leave the embeddings field out to compute embeddings with a model")
        elif n:
            if check_vectors:
                try:
                    _read_vectors(collection, embeddings_field)
                except InputError as exc:
                    problems["embeddings_field"] = str(exc)
            else:
                missing = n - len(collection.exists(embeddings_field))      # count() counts list elements
                if missing:
                    problems["embeddings_field"] = _missing_vectors_message(embeddings_field, missing, n)
    else:
        if store_embeddings:
            message = _check_writable_field(dataset, store_embeddings, "store_embeddings", "embeddings field",
                                            (fo.VectorField, fo.ArrayField, fo.ListField), runs, ("store_embeddings",))
            existing_field = dataset.get_field_schema().get(store_embeddings)
            if message is None and existing_field is not None and not _holds_vectors(existing_field):
                inner = getattr(existing_field, "field", None)   # a list field: others failed the type check above
                kind = type(inner).__name__ if inner is not None else "untyped"
                message = (f"field {store_embeddings!r} is a list of {kind} values, not of numbers; choose another "
                           f"store_embeddings")
            if message is None and store_embeddings == rank_field:
                message = "the embeddings cannot be stored in the rank field; choose another field"
            if message:
                problems["store_embeddings"] = message
        if check_files and n:
            missing = [p for p in collection.values("filepath") if not os.path.isfile(p)]
            if missing:
                report.notes.append(f"{len(missing)} of {n} images are missing on disk and will be skipped "
                                    f"(e.g. {missing[0]})")
                if len(missing) == n:
                    problems["view_target"] = (f"none of the {n} images of the target exist on disk (e.g. "
                                               f"{missing[0]}); check the filepaths")

    if budget is not None and n and "view_target" not in problems:
        try:
            report.budget_count = parse_budget(budget, n, already_labeled=report.fixed_count)
        except InputError as exc:
            problems["budget"] = str(exc)
    elif budget is None:
        problems["budget"] = "give a budget: a count like 50 or a percentage of the target like '5%'"
    return report


def _missing_vectors_message(name, missing, n):
    return (f"{missing} of {n} samples have no value in embeddings field {name!r}; compute embeddings for every "
            f"sample (e.g. compute_embeddings(..., embeddings_field={name!r})) or leave the field out to compute "
            f"them with a model")


def _read_vectors(collection, name):
    """(ids, features) from a vector field; raises InputError for missing values, mixed lengths, NaN."""
    ids, values = collection.values(["id", name])
    n = len(ids)
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise InputError(_missing_vectors_message(name, len(missing), n))
    lengths = {}
    arrays = []
    for i, value in enumerate(values):
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f"embeddings field {name!r} holds a value that is not a vector of numbers "
                             f"(sample {ids[i]}); recompute the field") from None
        if array.ndim != 1 or array.size == 0:
            raise InputError(f"embeddings field {name!r} holds a value of shape {array.shape} (sample {ids[i]}), "
                             f"not a flat vector; recompute the field")
        lengths.setdefault(array.size, []).append(ids[i])
        arrays.append(array)
    if len(lengths) > 1:
        parts = ", ".join(f"{dim} for {len(who)} sample(s) (e.g. {who[0]})"
                          for dim, who in sorted(lengths.items(), key=lambda kv: -len(kv[1])))
        raise InputError(f"embeddings field {name!r} mixes vector lengths: {parts}; recompute it with one model "
                         f"for every sample")
    features = np.stack(arrays)
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])]
        raise InputError(f"embeddings field {name!r} has NaN or infinite values in {int(bad.sum())} sample(s) "
                         f"(e.g. {first}); recompute them")
    return list(ids), features


# --------------------------------------------------------------------------------------------------------------
# Pull


def _reporter(progress):
    """A function (fraction, message) -> None from ``progress`` (callable, bool or None)."""
    if callable(progress):
        return progress
    return lambda fraction, message: None


def pull(collection, *, embeddings_field=None, model=None, pretrained=None, exclude_labeled=None, device="auto",
         batch_size=32, num_workers=None, cache_dir=None, progress=False):
    """Read the target's samples and their embeddings.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The samples to select from (image media only).
    embeddings_field : str, optional
        Read the embeddings from this vector field.  Every sample must have a
        vector, all of one length, all finite; otherwise :class:`InputError`.
    model : str, optional
        Compute the embeddings with this encoder (default
        ``efficientnet-lite0``); ignored when ``embeddings_field`` is given.
    pretrained : str, optional
        open_clip weights: a pretrained tag or a checkpoint file.
    exclude_labeled : str or list of str, optional
        Field names or ``"tag:NAME"``: samples that have a value in the field
        or carry the tag become fixed rows (already labeled).
    device, batch_size, num_workers, cache_dir
        Passed to :func:`activeft_label.embeddings.embed_images`.
    progress : bool or callable, default=False
        ``True`` shows progress bars on stderr; a callable is called as
        ``progress(fraction, message)`` while images are embedded.

    Returns
    -------
    FiftyOnePool
    """
    _check_target(collection)
    n = len(collection)
    if n == 0:
        raise InputError("the target view is empty: there is nothing to select from; widen the view or pick "
                         "another target")
    rules = _exclusion_rules(collection, exclude_labeled)
    labeled = _labeled_mask(collection, rules) if rules else np.zeros(n, dtype=bool)
    report = _reporter(progress)

    if embeddings_field is not None:
        if embeddings_field not in collection.get_field_schema():
            raise InputError(f"the target has no field {embeddings_field!r} (vector fields: "
                             f"{', '.join(embedding_fields(collection)) or 'none'})")
        report(0.0, f"reading embeddings from field {embeddings_field!r}")
        ids, features = _read_vectors(collection, embeddings_field)
        paths = collection.values("filepath")
        return FiftyOnePool(sample_ids=ids, filepaths=list(paths), features=features,
                            fixed=np.flatnonzero(labeled).astype(np.int64), skipped=[], target_size=n,
                            embeddings=f"field {embeddings_field!r}", embeddings_field=embeddings_field)

    from ..embeddings import DEFAULT_MODEL, embed_images, load_encoder

    model = model or DEFAULT_MODEL
    ids, paths = collection.values(["id", "filepath"])
    options = dict(batch_size=batch_size, num_workers=num_workers, device=device, cache_dir=cache_dir)
    if callable(progress):
        # Embed in chunks to report progress; load the encoder once, and only when the cache does not have it all.
        chunk = max(_PROGRESS_CHUNK, math.ceil(n / 50))
        encoder, parts, kept, skipped, cached = None, [], [], [], 0
        name, weights = model, pretrained
        for start in range(0, n, chunk):
            report(start / n, f"embedding images ({start} of {n})")
            part = embed_images(paths[start:start + chunk], model=encoder or model,
                                pretrained=None if encoder else pretrained, progress=False, **options)
            if encoder is None and part.embedded > 0 and start + chunk < n:
                encoder = load_encoder(model, pretrained, device=device)
            parts.append(part.features)
            kept.extend((np.asarray(part.kept) + start).tolist())
            skipped.extend(part.skipped)
            cached += part.cached
            name, weights = part.model, part.weights
        report(1.0, f"embedded {n} images")
        dims = {p.shape[1] for p in parts if p.shape[0]}
        features = (np.concatenate([p for p in parts if p.shape[0]]) if dims
                    else np.zeros((0, 0), dtype=np.float32))
        kept = np.asarray(kept, dtype=np.int64)
    else:
        embedded = embed_images(paths, model=model, pretrained=pretrained, progress=bool(progress), **options)
        features, kept, skipped = embedded.features, np.asarray(embedded.kept, dtype=np.int64), embedded.skipped
        cached, name, weights = embedded.cached, embedded.model, embedded.weights

    skipped_set = set(range(n)) - set(kept.tolist())
    reasons = {path: reason for path, reason in skipped}
    skipped_rows = [(ids[i], paths[i], reasons.get(paths[i], "could not be read")) for i in sorted(skipped_set)]
    if kept.size == 0:
        first = skipped_rows[0]
        raise InputError(f"none of the {n} images of the target could be read (first: {first[1]}: {first[2]}); "
                         f"check the filepaths")
    fixed = np.flatnonzero(labeled[kept]).astype(np.int64)
    return FiftyOnePool(sample_ids=[ids[i] for i in kept], filepaths=[paths[i] for i in kept],
                        features=np.ascontiguousarray(features, dtype=np.float32), fixed=fixed,
                        skipped=skipped_rows, target_size=n, embeddings=str(name), embeddings_field=None,
                        model=str(name), weights=str(weights), cached=int(cached))


# --------------------------------------------------------------------------------------------------------------
# Push


def get_run(dataset, run_name=DEFAULT_RUN_NAME):
    """The record of an activeft run: its config (dict) plus ``sample_ids`` (rank order) and ``timestamp``.

    Returns None when the dataset has no activeft run of that name.
    """
    runs = _runs_of(dataset)
    if run_name not in runs:
        return None
    record = dict(runs[run_name])
    record["timestamp"] = str(dataset.get_run_info(run_name).timestamp)
    record.update(_run_results(dataset, run_name))
    return record


def list_runs(dataset):
    """Names of the activeft runs recorded on ``dataset``."""
    return sorted(_runs_of(dataset))


def _run_results(dataset, key):
    try:
        results = dataset.load_run_results(key, cache=False, load_view=False)
    except Exception:
        return {}
    if results is None:
        return {}
    out = {}
    for name in ("sample_ids", "ranks", "cluster_sizes", "tagged_ids", "fixed_ids"):
        value = getattr(results, name, None)
        if value is not None:
            out[name] = list(value)
    return out


def _json_ready(value):
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def push(collection, pool, result, *, tag=DEFAULT_TAG, rank_field=DEFAULT_RANK_FIELD, run_name=DEFAULT_RUN_NAME,
         budget=None, extra=None, rank_offset=0):
    """Write a selection back to the dataset.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The target the pool was pulled from (the run is recorded on it).
    pool : FiftyOnePool
    result : SelectionResult
        What :func:`activeft_label.select` returned for ``pool.features``.
    tag : str, default="activeft"
        Tag added to the selected samples.
    rank_field : str, default="activeft_rank"
        Integer field; 1 = annotate first.  Unset on the samples this run
        ranked before and that are not selected any more.
    run_name : str, default="activeft"
        Run key on the dataset and name of the saved view.
    budget : int or str, optional
        The budget as the user gave it (recorded).
    extra : dict, optional
        More JSON-ready facts to record in the run config.
    rank_offset : int, default=0
        Ranks start at ``rank_offset + 1`` (a later round queued after the
        samples of earlier rounds).

    Returns
    -------
    SelectionSummary
    """
    dataset = _root(collection)
    rank_offset = int(rank_offset)
    report = preview(collection, budget=1, tag=tag, rank_field=rank_field, run_name=run_name)
    report.problems.pop("budget", None)
    report.problems.pop("view_target", None)
    report.raise_first()
    order = np.argsort(result.ranks, kind="stable")
    selected_rows = np.asarray(result.indices)[order]
    selected = [pool.sample_ids[int(i)] for i in selected_rows]
    ranks = {sid: rank for rank, sid in enumerate(selected, start=rank_offset + 1)}
    fixed_ids = {pool.sample_ids[int(i)] for i in pool.fixed}

    previous = get_run(dataset, run_name) or {}
    other_runs = {key: cfg for key, cfg in _runs_of(dataset).items() if key != run_name}
    keep_tag, keep_rank = set(), set()
    for key, cfg in other_runs.items():
        ids = set(_run_results(dataset, key).get("sample_ids", []))
        if cfg.get("tag") == previous.get("tag"):
            keep_tag |= ids
        if cfg.get("rank_field") == previous.get("rank_field"):
            keep_rank |= ids

    now_selected = set(selected)
    prev_tagged = set(previous.get("tagged_ids", []))
    prev_ranked = set(previous.get("sample_ids", []))
    untag = sorted(prev_tagged - (now_selected if previous.get("tag") == tag else set()) - keep_tag - fixed_ids)
    untag = sorted(dataset.select(untag).values("id")) if untag else []      # samples deleted since drop out
    unrank = sorted(prev_ranked - (now_selected if previous.get("rank_field") == rank_field else set())
                    - keep_rank - fixed_ids)

    # Which selected samples get the tag from this run (and so may lose it on a later re-run).
    has_tag = dict(zip(*dataset.select(selected).values(["id", "tags"]))) if selected else {}
    still_ours = prev_tagged if previous.get("tag") == tag else set()
    tagged_ids = [sid for sid in selected if tag not in (has_tag.get(sid) or []) or sid in still_ours]

    # Writes (everything above only read).
    if untag and previous.get("tag"):
        dataset.select(untag).untag_samples(previous["tag"])
    if unrank and previous.get("rank_field") in dataset.get_field_schema():
        dataset.set_values(previous["rank_field"], {sid: None for sid in unrank}, key_field="id")
    if selected:
        dataset.select(selected).tag_samples(tag)
    if rank_field not in dataset.get_field_schema():
        dataset.add_sample_field(rank_field, fo.IntField, description="activeft annotation priority (1 = first)")
    dataset.set_values(rank_field, ranks, key_field="id")

    view = dataset.select(selected, ordered=True)
    description = (f"activeft: {len(selected)} samples to annotate, rank 1 first (tag {tag!r}, field "
                   f"{rank_field!r}, run {run_name!r})")
    dataset.save_view(run_name, view, description=description, overwrite=True)

    params = dict(result.params)
    config = {
        RUN_MARKER: __version__, "method": result.method, "budget": len(selected),
        "budget_spec": budget if budget is not None else len(selected), "tag": tag, "rank_field": rank_field,
        "saved_view": run_name, "target_size": int(pool.target_size), "pool_size": len(pool),
        "fixed": int(len(fixed_ids)), "skipped": len(pool.skipped), "embeddings": pool.embeddings,
        "embeddings_field": pool.embeddings_field, "model": pool.model, "weights": pool.weights,
        "coverage": float(result.coverage), "params": params, "elapsed_s": round(float(result.elapsed), 3),
        "rank_offset": rank_offset,
    }
    config.update(extra or {})
    config = _json_ready(config)
    method = config.pop("method")
    run_config = collection.init_run(method=method, **config)
    collection.register_run(run_name, run_config, overwrite=True, cleanup=False)
    results = collection.init_run_results(
        run_name, sample_ids=selected, ranks=list(range(rank_offset + 1, rank_offset + len(selected) + 1)),
        cluster_sizes=[int(s) for s in np.asarray(result.cluster_sizes)[order]], tagged_ids=tagged_ids,
        fixed_ids=sorted(fixed_ids))
    collection.save_run_results(run_name, results, overwrite=True, cache=False)

    return SelectionSummary(
        dataset=dataset.name, run_name=run_name, saved_view=run_name, sample_ids=selected, tag=tag,
        rank_field=rank_field, target_size=int(pool.target_size), fixed_count=len(fixed_ids),
        skipped=list(pool.skipped), coverage=float(result.coverage), method=result.method, params=params,
        elapsed=float(result.elapsed), untagged=len(untag), untagged_tag=previous.get("tag") or "",
        embeddings=pool.embeddings, result=result)


def write_embeddings(collection, pool, field_name):
    """Store the pool's computed embeddings in ``field_name`` (a vector field) of the dataset."""
    dataset = _root(collection)
    runs = _runs_of(dataset)
    message = _check_writable_field(dataset, field_name, "store_embeddings", "embeddings field",
                                    (fo.VectorField, fo.ArrayField, fo.ListField), runs, ("store_embeddings",))
    if message:
        raise InputError(message)
    dataset.set_values(field_name, {sid: pool.features[i] for i, sid in enumerate(pool.sample_ids)}, key_field="id")


# --------------------------------------------------------------------------------------------------------------
# Labels from an annotation tool


@dataclass
class LabelWriteReport:
    """What :func:`write_labels` did: sample ids ``written``, ``unchanged``, ``conflicts`` (kept as they were:
    another label is there and ``overwrite`` was off) and ``missing`` (no such sample in the dataset)."""

    written: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    missing: list = field(default_factory=list)


def _label_content(label):
    """A label as a plain dict without its (random) ids, for comparing contents."""
    if label is None:
        return None

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("_id", "id")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(label.to_dict())


def check_label_field(collection, field_name, label_type, reserved=()):
    """InputError unless ``field_name`` can hold labels of ``label_type`` (absent, or a field of that type)."""
    dataset = _root(collection)
    message = _check_identifier("label field", field_name, "--label-field")
    if message:
        raise InputError(message)
    if "." in field_name or field_name.startswith("_"):
        raise InputError(f"--label-field {field_name!r} must be a top-level field name (no dots, no leading "
                         f"underscore)")
    if field_name in _RESERVED_FIELDS or field_name in reserved:
        raise InputError(f"--label-field {field_name!r} is a field FiftyOne or activeft manages; choose another name")
    schema = dataset.get_field_schema()
    if field_name not in schema:
        return
    existing = schema[field_name]
    document_type = getattr(existing, "document_type", None)
    if not isinstance(existing, fo.EmbeddedDocumentField) or document_type is not label_type:
        what = document_type.__name__ if document_type is not None else type(existing).__name__
        raise InputError(f"field {field_name!r} of dataset {dataset.name!r} holds {what}, not "
                         f"{label_type.__name__}; choose another --label-field")


def write_labels(collection, field_name, labels, *, overwrite=False):
    """Write labels to samples by sample id, never replacing a different label unless ``overwrite``.

    Parameters
    ----------
    collection : Dataset or DatasetView
    field_name : str
        The label field (created when absent; an existing one must hold the
        same label type, see :func:`check_label_field`).
    labels : dict {sample id: fo.Label}
        All of one label type.
    overwrite : bool, default=False
        Replace labels that differ from the new ones.  Without it such
        samples are left as they are and listed in ``conflicts``.

    Returns
    -------
    LabelWriteReport
        A label equal in content to the one already there counts as
        ``unchanged`` and is not written again.
    """
    dataset = _root(collection)
    report = LabelWriteReport()
    if not labels:
        return report
    types = {type(label) for label in labels.values()}
    if len(types) != 1:
        raise InputError(f"labels of several types ({', '.join(sorted(t.__name__ for t in types))}) for one field")
    check_label_field(dataset, field_name, types.pop())
    wanted = list(labels)
    present = dataset.select(wanted)
    has_field = field_name in dataset.get_field_schema()
    if has_field:
        ids, current = present.values(["id", field_name])
    else:
        ids, current = present.values("id"), None
    found = set(ids)
    report.missing = [sid for sid in wanted if sid not in found]
    existing = dict(zip(ids, current)) if has_field else {}
    write = {}
    for sid in ids:
        new, old = labels[sid], existing.get(sid)
        if old is not None and _label_content(old) == _label_content(new):
            report.unchanged.append(sid)
        elif old is not None and not overwrite:
            report.conflicts.append(sid)
        else:
            write[sid] = new
    if write:
        dataset.set_values(field_name, write, key_field="id")
    report.written = list(write)
    return report


# --------------------------------------------------------------------------------------------------------------
# The whole job


def select_samples(collection, budget, *, method="activeft", embeddings_field=None, model=None, pretrained=None,
                   store_embeddings=None, exclude_labeled=None, tag=DEFAULT_TAG, rank_field=DEFAULT_RANK_FIELD,
                   run_name=DEFAULT_RUN_NAME, loss=None, temperature=0.07, lr=1e-3, iterations=300, seed=0,
                   center=False, device="auto", batch_size=32, num_workers=None, cache_dir=None, progress=False,
                   rank_offset=0, extra=None):
    """Select samples of a dataset or view to annotate, and write the selection back.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The target (image samples).
    budget : int or str
        A count (``50``) or a percentage of the target (``"5%"``).
    method : str, default="activeft"
        ``"activeft"`` or a baseline (see :data:`activeft_label.METHODS`).
    embeddings_field : str, optional
        Read embeddings from this vector field instead of computing them.
    model, pretrained : str, optional
        Encoder for computing embeddings (default ``efficientnet-lite0``).
    store_embeddings : str, optional
        Store computed embeddings in this field (a later run can read them
        with ``embeddings_field``).
    exclude_labeled : str or list of str, optional
        Field names or ``"tag:NAME"``; matching samples are treated as already
        labeled: never selected, and the new picks cover what they do not.
    tag, rank_field, run_name : str
        See :func:`push`.
    loss, temperature, lr, iterations, seed, center, device
        Passed to :func:`activeft_label.select`.
    batch_size, num_workers, cache_dir
        Passed to :func:`activeft_label.embeddings.embed_images`.
    progress : bool or callable, default=False
        ``True`` shows progress bars; a callable gets ``(fraction, message)``.
    rank_offset : int, default=0
        See :func:`push`.
    extra : dict, optional
        More JSON-ready facts to record in the run config.

    Returns
    -------
    SelectionSummary

    Raises
    ------
    InputError
        For anything the caller can fix (empty view, bad budget, bad
        embeddings field, unreadable images, bad names); nothing is written.
    """
    from ..selection import DEFAULT_LOSS
    from ..selection import select as run_selection

    started = time.perf_counter()
    report = _reporter(progress)
    if store_embeddings and embeddings_field:
        raise InputError("store_embeddings only applies when embeddings are computed; leave out embeddings_field "
                         "or store_embeddings")
    checks = preview(collection, budget, embeddings_field=embeddings_field, exclude_labeled=exclude_labeled,
                     tag=tag, rank_field=rank_field, run_name=run_name, store_embeddings=store_embeddings)
    checks.raise_first()
    count = checks.budget_count

    report(0.0, "reading samples")
    pool = pull(collection, embeddings_field=embeddings_field, model=model, pretrained=pretrained,
                exclude_labeled=exclude_labeled, device=device, batch_size=batch_size, num_workers=num_workers,
                cache_dir=cache_dir,
                progress=(lambda f, m: report(0.05 + 0.75 * f, m)) if callable(progress) else progress)
    available = len(pool) - pool.fixed.size
    if count > available:
        why = f"{len(pool.skipped)} image(s) could not be read" if pool.skipped else ""
        if pool.fixed.size:
            why += (", and " if why else "") + f"{pool.fixed.size} are already labeled"
        raise InputError(f"budget {count} is larger than the {available} samples available for selection "
                         f"({why}); lower the budget")

    report(0.8, f"selecting {count} of {len(pool)} samples with {method}")
    options = dict(temperature=temperature, lr=lr, iterations=iterations, loss=loss or DEFAULT_LOSS) \
        if method == "activeft" else {}
    result = run_selection(pool.features, count, method, fixed=pool.fixed if pool.fixed.size else None, seed=seed,
                           center=center, device=device, progress=progress is True, **options)

    report(0.95, "writing tags, ranks and the saved view")
    if store_embeddings:
        write_embeddings(collection, pool, store_embeddings)
    summary = push(collection, pool, result, tag=tag, rank_field=rank_field, run_name=run_name, budget=budget,
                   rank_offset=rank_offset, extra={"store_embeddings": store_embeddings or None,
                                                   "exclude_labeled": exclude_labeled or None, **(extra or {})})
    summary.elapsed = time.perf_counter() - started
    report(1.0, f"selected {summary.count} samples")
    return summary


def _short(exc, limit=300):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
