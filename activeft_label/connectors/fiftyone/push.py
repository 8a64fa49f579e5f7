"""Writing a selection back: tags, ranks, the saved view and the run record."""

import json

import fiftyone as fo
import fiftyone.core.runs as fors
import numpy as np
from fiftyone.core.runs import RunResults

from ...errors import InputError
from ...version import __version__
from .checks import activeft_runs, check_writable_field, own_rank_field, preview, run_results
from .defaults import DEFAULT_RANK_FIELD, DEFAULT_RUN_NAME, DEFAULT_TAG, RUN_MARKER
from .holds import check_deletable, release_run
from .results import SelectionSummary
from .runs import ActiveFTRunConfig, upgrade_records
from .target import root_dataset


def get_run(dataset, run_name=DEFAULT_RUN_NAME):
    """The record of an activeft run: its config (dict) plus ``sample_ids`` (rank order) and ``timestamp``.

    Returns None when the dataset has no activeft run of that name.
    """
    runs = activeft_runs(dataset)
    if run_name not in runs:
        return None
    record = dict(runs[run_name])
    record["timestamp"] = str(dataset.get_run_info(run_name).timestamp)
    record.update(run_results(dataset, run_name))
    return record


def list_runs(dataset):
    """Names of the activeft runs recorded on ``dataset``."""
    return sorted(activeft_runs(dataset))


def _other_runs(dataset, run_name):
    """{run: (config, set of its sample ids)} of the activeft runs other than ``run_name``, each read once."""
    return {key: (cfg, set(run_results(dataset, key).get("sample_ids", [])))
            for key, cfg in activeft_runs(dataset).items() if key != run_name}


def _owned_by_other_runs(others, record):
    """(ids whose tag, ids whose rank) ``others`` also own, of the tag and rank field ``record`` (a run) wrote."""
    keep_tag, keep_rank = set(), set()
    for cfg, ids in others.values():
        if cfg.get("tag") == record.get("tag"):
            keep_tag |= ids
        if cfg.get("rank_field") == record.get("rank_field"):
            keep_rank |= ids
    return keep_tag, keep_rank


def delete_run(collection, run_name, *, force=False):
    """Remove an activeft run from a dataset: its tags, rank values, saved view and run record.

    What FiftyOne Brain's ``cleanup()`` does for its runs: the tag is removed
    from the samples this run tagged, the rank field is unset on the samples
    it ranked, its saved view and its FiftyOne run record are deleted.  A tag
    or rank that another activeft run also wrote on a sample stays; labels,
    other fields and other tags are never touched.  FiftyOne's own
    ``dataset.delete_run(run_name)`` does the same cleanup (see
    :mod:`.runs`), but cannot refuse a pushed run.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The run's dataset (a view stands for its dataset).
    run_name : str
    force : bool, default=False
        Delete a run that was pushed to an annotation tool (its tasks stay
        there); without it such a run is refused.

    Returns
    -------
    dict
        ``untagged``, ``unranked`` (sample counts), ``saved_view`` (whether a
        saved view was deleted), ``tag``, ``rank_field``.
    """
    dataset = root_dataset(collection)
    if get_run(dataset, run_name) is None:
        runs = ", ".join(repr(r) for r in list_runs(dataset)) or "none"
        raise InputError(f"dataset {dataset.name!r} has no activeft run {run_name!r} (its activeft runs: {runs})")
    check_deletable(dataset, run_name, force)
    done = remove_run_values(dataset, run_name)
    # The values are gone; the record goes without FiftyOne calling cleanup() again (records of earlier versions
    # have no cleanup of their own, so the removal above is what cleans them).
    fors.Run.delete_run(dataset, run_name, cleanup=False)
    return done


def remove_run_values(dataset, run_name):
    """Remove what activeft run ``run_name`` wrote on ``dataset`` except its record; release its holds.

    The tag comes off the samples the run tagged, the rank field is unset on
    the samples it ranked (both only where no other activeft run wrote the
    same tag or rank field on that sample), and the run's saved view is
    deleted.  Nothing when the dataset has no such activeft run.  This is
    :class:`.runs.ActiveFTRun`'s ``cleanup()``.

    Returns
    -------
    dict
        ``untagged``, ``unranked``, ``saved_view``, ``tag``, ``rank_field``.
    """
    record = get_run(dataset, run_name)
    if record is None:
        return {"untagged": 0, "unranked": 0, "saved_view": False, "tag": None, "rank_field": None}
    keep_tag, keep_rank = _owned_by_other_runs(_other_runs(dataset, run_name), record)
    tag, rank_field = record.get("tag"), record.get("rank_field")
    untag = sorted(set(record.get("tagged_ids", [])) - keep_tag)
    untag = sorted(dataset.select(untag).values("id")) if untag else []      # samples deleted since drop out
    unrank = sorted(set(record.get("sample_ids", [])) - keep_rank)
    unrank = sorted(dataset.select(unrank).values("id")) if unrank and rank_field in dataset.get_field_schema() else []

    if untag and tag:
        dataset.select(untag).untag_samples(tag)
    if unrank:
        dataset.set_values(rank_field, {sid: None for sid in unrank}, key_field="id")
    saved_view = run_name in dataset.list_saved_views()
    if saved_view:
        dataset.delete_saved_view(run_name)
    release_run(dataset, run_name)
    return {"untagged": len(untag), "unranked": len(unrank), "saved_view": saved_view, "tag": tag,
            "rank_field": rank_field}


def _json_ready(value):
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def push(collection, pool, result, *, tag=DEFAULT_TAG, rank_field=DEFAULT_RANK_FIELD, run_name=DEFAULT_RUN_NAME,
         budget=None, extra=None, rank_offset=0, replace=False):
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
    replace : bool, default=False
        Replace ``run_name`` although it was pushed to an annotation tool
        (see :func:`preview`).

    Raises
    ------
    InputError
        Before anything is written: a bad name, a held run, or a selected
        sample whose rank another run of the same rank field owns.

    Returns
    -------
    SelectionSummary
    """
    dataset = root_dataset(collection)
    rank_offset = int(rank_offset)
    report = preview(collection, budget=1, tag=tag, rank_field=rank_field, run_name=run_name, replace=replace,
                     check_owners=False)
    report.problems.pop("budget", None)
    report.problems.pop("view_target", None)
    report.raise_first()
    order = np.argsort(result.ranks, kind="stable")
    selected_rows = np.asarray(result.indices)[order]
    selected = [pool.sample_ids[int(i)] for i in selected_rows]
    ranks = {sid: rank for rank, sid in enumerate(selected, start=rank_offset + 1)}
    fixed_ids = {pool.sample_ids[int(i)] for i in pool.fixed}

    previous = get_run(dataset, run_name) or {}
    others = _other_runs(dataset, run_name)
    keep_tag, keep_rank = _owned_by_other_runs(others, previous)
    for key, (cfg, ids) in others.items():
        taken = [sid for sid in selected if sid in ids] if cfg.get("rank_field") == rank_field else []
        if taken:
            raise InputError(f"run {key!r} owns the {rank_field!r} values of {len(taken)} of the selected samples "
                             f"(e.g. {taken[0]}); give run {run_name!r} its own rank field (e.g. "
                             f"{own_rank_field(run_name, rank_field)!r}) or delete run {key!r} first (activeft "
                             f"fiftyone delete-run {key})")

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
        "precision": pool.precision,
        "coverage": float(result.coverage), "params": params, "elapsed_s": round(float(result.elapsed), 3),
        "rank_offset": rank_offset,
    }
    config.update(extra or {})
    config = _json_ready(config)
    method = config.pop("method")
    # The run record is written last, config and results in one call: a reader that finds the record (the App,
    # a test, sync push) finds the tags, ranks and saved view already there.  Its class makes FiftyOne's own
    # dataset.delete_run() clean up after it (runs.py); records of earlier versions get that class first (only
    # the class changes), so that this one can replace them and delete_run() cleans them up too.
    upgrade_records(dataset, activeft_runs(dataset))
    run_config = ActiveFTRunConfig(method=method, **config)
    results = RunResults(
        collection, run_config, run_name, sample_ids=selected,
        ranks=list(range(rank_offset + 1, rank_offset + len(selected) + 1)),
        cluster_sizes=[int(s) for s in np.asarray(result.cluster_sizes)[order]], tagged_ids=tagged_ids,
        fixed_ids=sorted(fixed_ids))
    collection.register_run(run_name, run_config, results=results, overwrite=True, cleanup=False, cache=False)

    return SelectionSummary(
        dataset=dataset.name, run_name=run_name, saved_view=run_name, sample_ids=selected, tag=tag,
        rank_field=rank_field, target_size=int(pool.target_size), fixed_count=len(fixed_ids),
        skipped=list(pool.skipped), coverage=float(result.coverage), method=result.method, params=params,
        elapsed=float(result.elapsed), untagged=len(untag), untagged_tag=previous.get("tag") or "",
        embeddings=pool.embeddings, result=result)


def write_embeddings(collection, pool, field_name):
    """Store the pool's computed embeddings in ``field_name`` (a vector field) of the dataset."""
    dataset = root_dataset(collection)
    runs = activeft_runs(dataset)
    message = check_writable_field(dataset, field_name, "store_embeddings", "embeddings field",
                                   (fo.VectorField, fo.ArrayField, fo.ListField), runs, ("store_embeddings",))
    if message:
        raise InputError(message)
    dataset.set_values(field_name, {sid: pool.features[i] for i, sid in enumerate(pool.sample_ids)}, key_field="id")
