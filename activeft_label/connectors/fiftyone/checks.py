"""Every check that can be made before reading vectors or images, and reading the vectors."""

import os

import fiftyone as fo
import fiftyone.core.utils as fou
import numpy as np

from ...budget import parse_budget
from ...errors import InputError
from .defaults import DEFAULT_RANK_FIELD, DEFAULT_RUN_NAME, DEFAULT_TAG, RESERVED_FIELDS, RUN_MARKER, RUN_NAME_PATTERN
from .holds import replacement_problem
from .internals import is_generated
from .results import Preview
from .target import embedding_fields, holds_vectors, label_fields, root_dataset, slug_or_none


def check_target(collection):
    media = getattr(collection, "media_type", None)
    if is_generated(collection):
        raise InputError("the target is a generated view (patches, frames or clips); select from the dataset or a "
                         "view of its samples instead")
    if media == "group":
        raise InputError("the target is a grouped dataset; pick a slice first, e.g. "
                         "view.select_group_slices('left'), or set the App's group slice")
    if media not in (None, "image"):
        raise InputError(f"the target holds {media} samples; only image datasets can be selected from")


def check_identifier(kind, value, option):
    if not isinstance(value, str) or not value.strip():
        return f"{kind} must be a non-empty name (set {option})"
    if value != value.strip():
        return f"{kind} {value!r} starts or ends with spaces; remove them"
    return None


def activeft_runs(dataset):
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


def check_writable_field(dataset, name, option, what, expected, runs, kinds):
    """Message if ``name`` cannot be written as ``what``, else None."""
    message = check_identifier(what, name, option)
    if message:
        return message
    if name in RESERVED_FIELDS or name.startswith(("_", "$")) or "." in name:
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


def exclusion_rules(collection, exclude_labeled):
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
            fields = ", ".join(label_fields(collection) or [n for n in schema if n not in RESERVED_FIELDS][:8])
            raise InputError(f"exclude_labeled: {item!r} is not a field of the dataset (label fields: "
                             f"{fields or 'none'}); write 'tag:NAME' to exclude samples that carry a tag")
    return rules


def labeled_mask(collection, rules):
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


def run_results(dataset, key):
    """The stored results of run ``key`` as a dict of lists (``sample_ids``, ``ranks``, ...); {} when none."""
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


def own_rank_field(run_name, rank_field):
    """A rank field name for ``run_name`` other than ``rank_field`` (what the messages propose)."""
    proposal = f"{run_name}_rank"
    return proposal if proposal != rank_field else f"{run_name}_rank_2"


def rank_field_problem(collection, dataset, runs, run_name, rank_field, rules):
    """Why this run may not write ``rank_field``, or None: another run owns its values on samples it could pick.

    Samples excluded as labeled cannot be picked, so rounds that exclude the
    earlier rounds' samples may share a rank field.
    """
    for other, config in runs.items():
        if other == run_name or config.get("rank_field") != rank_field:
            continue
        owned = run_results(dataset, other).get("sample_ids", [])
        if not owned:
            continue
        shared = collection.select(owned)
        candidates = np.asarray(shared.values("id"), dtype=object)
        if rules and candidates.size:
            candidates = candidates[~labeled_mask(shared, rules)]
        if candidates.size:
            return (f"run {other!r} owns the {rank_field!r} values of {candidates.size} sample(s) this run could "
                    f"select (e.g. {candidates[0]}); give this run its own rank field (e.g. "
                    f"{own_rank_field(run_name, rank_field)!r}), exclude those samples, or delete run {other!r} "
                    f"first (activeft fiftyone delete-run {other})")
    return None


def preview(collection, budget=None, *, embeddings_field=None, exclude_labeled=None, tag=DEFAULT_TAG,
            rank_field=DEFAULT_RANK_FIELD, run_name=DEFAULT_RUN_NAME, store_embeddings=None, check_files=False,
            check_vectors=False, replace=False, check_owners=True):
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
    replace : bool, default=False
        Allow selecting ``run_name`` again although it was pushed to an
        annotation tool (see :mod:`.holds`); never while a later round depends
        on it.
    check_owners : bool, default=True
        Refuse a rank field whose values another run owns on samples this
        run could select (see :func:`rank_field_problem`).  :func:`push`
        checks the samples actually selected instead.

    Returns
    -------
    Preview
    """
    report = Preview()
    problems = report.problems
    try:
        check_target(collection)
    except InputError as exc:
        problems["view_target"] = str(exc)
        return report
    dataset = root_dataset(collection)
    report.target_size = n = len(collection)
    if n == 0:
        problems["view_target"] = ("the target view is empty: there is nothing to select from; widen the view or "
                                   "pick another target")

    runs = activeft_runs(dataset)
    existing = runs.get(run_name) if isinstance(run_name, str) else None
    message = check_identifier("the run name", run_name, "run_name")
    if message is None and not RUN_NAME_PATTERN.fullmatch(run_name):
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
        clash = [v for v in dataset.list_saved_views() if v != run_name and slug_or_none(v) == slug]
        if clash:
            message = (f"dataset {dataset.name!r} has a saved view {clash[0]!r} that FiftyOne would overwrite with "
                       f"the view of run {run_name!r} (the same URL name {slug!r}); pick another run name")
    if message is None and existing is not None:
        message = replacement_problem(dataset, run_name, replace)
    if message:
        problems["run_name"] = message
    message = check_identifier("the tag", tag, "tag")
    if message:
        problems["tag"] = message
    message = check_writable_field(dataset, rank_field, "rank_field", "rank field", (fo.IntField,), runs,
                                   ("rank_field",))
    if message:
        problems["rank_field"] = message

    rules = []
    try:
        rules = exclusion_rules(collection, exclude_labeled)
    except InputError as exc:
        problems["exclude_labeled"] = str(exc)
    if n and rules:
        report.fixed_count = int(labeled_mask(collection, rules).sum())
    if check_owners and n and not problems.keys() & {"run_name", "rank_field", "exclude_labeled"}:
        message = rank_field_problem(collection, dataset, runs, run_name, rank_field, rules)
        if message:
            problems["rank_field"] = message

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
                    read_vectors(collection, embeddings_field)
                except InputError as exc:
                    problems["embeddings_field"] = str(exc)
            else:
                missing = n - len(collection.exists(embeddings_field))      # count() counts list elements
                if missing:
                    problems["embeddings_field"] = _missing_vectors_message(embeddings_field, missing, n)
    else:
        if store_embeddings:
            message = check_writable_field(dataset, store_embeddings, "store_embeddings", "embeddings field",
                                           (fo.VectorField, fo.ArrayField, fo.ListField), runs, ("store_embeddings",))
            existing_field = dataset.get_field_schema().get(store_embeddings)
            if message is None and existing_field is not None and not holds_vectors(existing_field):
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


def read_vectors(collection, name):
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
