"""sync push: select in FiftyOne, queue the selection in Label Studio in rank order."""

import time

from ..connectors import fiftyone as fo_connector
from ..connectors import labelstudio as ls_connector
from ..errors import InputError
from .records import TASK_FIELD, check_task_field, project_record, round_run_name, save_record
from .results import PushResult


def _check_same_config(conn, project, labels, task, fix):
    """InputError unless ``project``'s label config is the one ``labels``/``task`` describe (when given)."""
    if labels is not None and not ls_connector.has_label_config(project, labels, task):
        raise InputError(f"project {project['id']} ({ls_connector.project_url(conn, project['id'])}) has another "
                         f"label config than --labels/--task describe; {fix}")


def _resolve_project(conn, project_id, title, labels, task):
    """(existing project dict or None, title, config to create with or None): read-only."""
    if (project_id is None) == (title is None):
        raise InputError("give either --project ID (an existing project) or --title TITLE (found or created)")
    if project_id is not None:
        project = ls_connector.get_project(conn, project_id)
        _check_same_config(conn, project, labels, task, "leave out --labels to keep the project's config")
        return project, project["title"], None
    found = ls_connector.find_project(conn, title)
    if found:
        _check_same_config(conn, found[0], labels, task, "choose another --title, or leave out --labels")
        return found[0], title, None
    if labels is None:
        raise InputError(f"there is no project titled {title!r} yet; pass --labels a,b,c (and --task) to create it")
    ls_connector.check_title(title)
    return None, title, ls_connector.label_config(labels, task)


def push(collection, conn, budget=None, *, project_id=None, title=None, labels=None, task="classification",
         round_number=1, run_name=fo_connector.DEFAULT_RUN_NAME, reselect=False, task_field=TASK_FIELD,
         images="auto", document_root=None, batch_size=ls_connector.IMPORT_BATCH, selection=None, embedding=None,
         selection_options=None, repair=False, progress=True):
    """Select samples in FiftyOne and queue them in Label Studio in priority order.

    Parameters
    ----------
    collection : Dataset or DatasetView
        Where to select from (image samples with files on this machine).
    conn : activeft_label.connectors.labelstudio.Connection
    budget : int or str, optional
        A count or a percentage of the target.  Needed when the round has no
        selection run yet (or with ``reselect``); when it has one, the run is
        reused and ``budget``, if given, must agree with it.
    project_id : int, optional
        An existing project.  Give this or ``title``.
    title : str, optional
        The project with this title, created (with ``labels`` and ``task``)
        when there is none.
    labels : str or list of str, optional
        Label names; needed to create a project, checked against an existing one.
    task : {"classification", "detection"}
        Choices or RectangleLabels, for a project created here.
    round_number : int, default=1
        Round 1 selects ``budget`` samples.  Round K > 1 needs rounds 1..K-1
        pushed to this project; it selects ``budget`` more with every queued
        sample as a fixed centroid (never selected again; the new picks cover
        what they do not) and queues them after the earlier rounds.
    run_name : str, default="activeft"
        FiftyOne selection run (and saved view) of round 1; round K uses
        ``run_name_roundK``.
    reselect : bool, default=False
        Select the round again even though its run exists (only while no
        later round was pushed).  It is the only way to replace a pushed run:
        ``activeft fiftyone select`` refuses it (see
        :mod:`activeft_label.connectors.fiftyone.holds`).
    repair : bool, default=False
        Mend a queue in which a sample belongs to several rounds (left by an
        earlier version, where a pushed run could be replaced): each such
        sample stays in its earliest round, and the project's ranks are
        written again from the rounds' runs (stale ranks are cleared).
    task_field : str, default="activeft_ls_task"
        Integer sample field that receives each pushed sample's task id.
    images, document_root, batch_size
        How images reach the server and tasks per import request (see
        :func:`activeft_label.connectors.labelstudio.push_images`).  A push
        that leaves ``images="auto"`` and no ``document_root`` uses the
        document root an earlier push to this project was given.
    selection : SelectionOptions, optional
        How to select (method, loss, iterations, seed, ...); default
        :class:`~activeft_label.selection.options.SelectionOptions()`.
    embedding : EmbeddingOptions, optional
        How to embed (model, pretrained, batch size, cache); default
        :class:`~activeft_label.embeddings.options.EmbeddingOptions()`.
    selection_options : dict, optional
        More keyword arguments of
        :func:`activeft_label.connectors.fiftyone.select_samples`
        (embeddings_field, exclude_labeled, tag, device, ...; the settings of
        ``selection`` and ``embedding`` can be given here too).
    progress : bool or callable, default=True
        ``True`` shows progress bars; a callable gets ``(fraction, message)``
        (selection phases, then images uploaded and tasks imported / total).

    Returns
    -------
    PushResult

    Everything that can be checked is checked before anything is written.
    The steps are: selection recorded in FiftyOne (tags, ranks, run, saved
    view) → tasks in Label Studio (missing ones imported in rank order,
    others updated) → task ids stored on the samples.  A push interrupted
    anywhere is completed by running it again: the selection run is reused,
    tasks are found by ``activeft_id``, nothing is duplicated.
    """
    started = time.perf_counter()
    dataset = fo_connector.root_dataset(collection)
    round_number = int(round_number)
    options = _select_options(round_number, selection, embedding, selection_options)
    # Every check that can refuse runs here, before anything is written.
    ls_connector.check_images_option(collection.values("filepath") if images == "local-files" else [], images,
                                     document_root)
    project, title, create_config = _resolve_project(conn, project_id, title, labels, task)
    if project is not None:
        _check_existing_project(dataset, project, task_field)
    rounds = _pushed_rounds(dataset, project, round_number)
    name = round_run_name(run_name, round_number)
    # Before any selection work: a queue that names a sample twice is pushed only with repair.
    pushed_runs = {k: fo_connector.get_run(dataset, r["run_name"]) for k, r in rounds.items()}
    kept = {k: r for k, r in pushed_runs.items() if not (reselect and k == round_number)}
    _queue(dataset, rounds, kept, None, task_field, repair, project)
    run, reused, summary = _round_selection(collection, dataset, name, budget, round_number, rounds, reselect,
                                            task_field, options, progress)
    this_round = {"round": round_number, "run_name": name, "count": len(run.get("sample_ids", [])),
                  "rank_offset": int(run.get("rank_offset") or 0)}
    entries, present_ids, previous, missing = _queue(dataset, rounds, {**pushed_runs, round_number: run}, this_round,
                                                     task_field, repair, project)

    # Writes start here.
    project, document_root = _record_push(conn, dataset, project, title, create_config, rounds, this_round,
                                          task_field, images, document_root)
    if callable(progress):
        progress(0.8, f"queueing {len(entries)} samples in Label Studio project {project['id']}")
        # Uploads, imports and rank updates report their counts in the last fifth.
        task_progress = lambda fraction, message: progress(0.8 + 0.2 * fraction, message)  # noqa: E731
    else:
        task_progress = progress is True
    image_field = ls_connector.image_field(project.get("label_config"))
    report = ls_connector.push_images(conn, project["id"], entries, images=images, document_root=document_root,
                                      batch_size=batch_size, field=image_field, progress=task_progress)
    recreated = _store_task_ids(dataset, task_field, project["id"], report.task_ids, present_ids, previous)

    return PushResult(
        project_id=int(project["id"]), project_title=project.get("title", title), round=round_number, run_name=name,
        reused=reused, selected=this_round["count"], queued=len(entries), created=report.created,
        updated=report.updated, unchanged=report.unchanged, cleared=report.cleared, uploaded=report.uploaded,
        recreated=recreated,
        missing_samples=missing, url=report.url, warnings=list(report.warnings),
        elapsed=time.perf_counter() - started, selection=summary)


def _select_options(round_number, selection, embedding, selection_options):
    """The keyword arguments of ``select_samples`` for this push; refuses a bad round or a reserved option."""
    if round_number < 1:
        raise InputError(f"--round must be 1 or more, got {round_number}")
    extra = dict(selection_options or {})
    for reserved in ("run_name", "rank_offset", "progress"):
        if reserved in extra:
            raise InputError(f"selection option {reserved!r} is set by sync push itself")
    options = {}
    for given in (selection, embedding):
        if given is not None:
            options.update(given.as_kwargs())
    options.update(extra)
    return options


def _check_existing_project(dataset, project, task_field):
    """InputError unless an existing project can take this push (task field free, an Image tag to fill)."""
    check_task_field(dataset, task_field, project["id"])
    try:
        ls_connector.image_field(project.get("label_config"))
    except InputError:
        raise InputError(f"Label Studio project {project['id']}'s label config has no <Image value=\"$...\"> "
                         f"tag for the pushed images to go to; add one in the project's Labeling Setup, or push "
                         f"to a new project with --title and --labels") from None


def _pushed_rounds(dataset, project, round_number):
    """{round: record} of the rounds already pushed to ``project``; refuses a round whose predecessors are missing."""
    record = project_record(dataset, project["id"]) if project is not None else None
    rounds = {int(r["round"]): r for r in (record or {}).get("rounds", [])}
    if round_number > 1:
        earlier = [k for k in range(1, round_number) if k not in rounds]
        if project is None or earlier:
            raise InputError(f"round {round_number} needs round(s) {', '.join(map(str, earlier or [1]))} pushed to "
                             f"this project first (activeft sync push --round {(earlier or [1])[0]} ...)")
    return rounds


def _round_selection(collection, dataset, name, budget, round_number, rounds, reselect, task_field, options,
                     progress):
    """(run record, reused, SelectionSummary or None): the round's existing run, or a new selection."""
    later = [k for k in rounds if k > round_number]
    existing = fo_connector.get_run(dataset, name)
    if existing is not None and not reselect:
        count = len(existing.get("sample_ids", []))
        if budget is not None and str(budget) != str(existing.get("budget_spec")) and str(budget) != str(count):
            raise InputError(f"selection run {name!r} already selected {count} samples (budget "
                             f"{existing.get('budget_spec')}); leave out --budget to push it, pass --reselect to "
                             f"select again, or choose another --run-name")
        return existing, True, None
    if reselect and later:
        raise InputError(f"round {round_number} cannot be selected again: round(s) {sorted(later)} were pushed "
                         f"after it")
    if budget is None:
        raise InputError(f"there is no selection run {name!r} yet: pass --budget N or P% to select")
    options = dict(options)
    offset = 0
    exclude = list(options.pop("exclude_labeled", None) or [])
    if round_number > 1:
        offset = max(int(r["rank_offset"]) + int(r["count"]) for k, r in rounds.items() if k < round_number)
        if task_field not in exclude:
            exclude.append(task_field)
    on_progress = progress if callable(progress) else None
    summary = fo_connector.select_samples(
        collection, budget, run_name=name, exclude_labeled=exclude or None, rank_offset=offset, replace=reselect,
        progress=(lambda f, m: on_progress(0.8 * f, m)) if on_progress else progress, **options)
    return fo_connector.get_run(dataset, name), False, summary


def _queue(dataset, rounds, runs, this_round, task_field, repair, project):
    """The project's queue: every round (the earlier ones as they were pushed) plus this one.

    ``runs`` maps each round to its selection run (None where it is gone),
    each read once by :func:`push`.  ``this_round`` None checks the pushed
    rounds alone.  Returns (entries
    {id, rank, path} of the samples still in the dataset, their ids, {id:
    stored task id}, ids of the selected samples gone from the dataset).  A
    sample in two rounds is refused unless ``repair``, which keeps it in the
    earliest.
    """
    queue, first_round = [], {}
    twice = {}
    for k in sorted(runs):
        info = this_round if this_round and k == this_round["round"] else rounds[k]
        run_k = runs[k]
        if run_k is None:
            if this_round is None:
                continue          # reported below, once the round's own run is known
            raise InputError(f"the selection run {info['run_name']!r} of round {k} is gone from dataset "
                             f"{dataset.name!r}; push round {k} again (activeft sync push --round {k} --reselect "
                             f"...)")
        start = int(run_k.get("rank_offset") or 0)
        for i, sid in enumerate(run_k.get("sample_ids", []), start=1):
            if sid in first_round:
                twice.setdefault((first_round[sid], k), []).append(sid)
                continue
            first_round[sid] = k
            queue.append((sid, start + i))
    if twice and not repair:
        pairs = "; ".join(f"{len(ids)} in rounds {a} and {b} (e.g. sample {ids[0]})"
                          for (a, b), ids in sorted(twice.items()))
        where = f" -p {project['id']}" if project is not None else ""
        raise InputError(f"the queue names samples twice: {pairs}. A pushed selection run was selected again after "
                         f"a later round; nothing was pushed. Run `activeft sync push -d {dataset.name}{where} "
                         f"--repair` to keep each sample in its earliest round and write the ranks again")
    if this_round is None:
        return None
    wanted_ids = [sid for sid, _ in queue]
    present_ids, paths, previous = _sample_values(dataset, wanted_ids, task_field)
    missing = [sid for sid in wanted_ids if sid not in present_ids]
    entries = [{"id": sid, "rank": rank, "path": paths[sid]} for sid, rank in queue if sid in present_ids]
    if not entries:
        raise InputError(f"none of the {len(wanted_ids)} selected samples are in dataset {dataset.name!r} any more; "
                         f"push again with --reselect")
    return entries, present_ids, previous, missing


def _record_push(conn, dataset, project, title, create_config, rounds, this_round, task_field, images,
                 document_root):
    """Create the project when it is new and record the push on the dataset; returns (project, document root)."""
    if project is None:
        project = ls_connector.create_project(conn, title, create_config, description=(
            f"ActiveFT selection from FiftyOne dataset {dataset.name!r}, imported in priority order (view "
            f"'{ls_connector.VIEW_TITLE}' lists it by rank)."))
        check_task_field(dataset, task_field, project["id"])
    record = dict(project_record(dataset, project["id"]) or {})
    if images == "auto" and document_root is None and record.get("document_root"):
        document_root = record["document_root"]  # a later round serves images the way the first one did
    record.update({"url": conn.url, "title": project.get("title", title), "task_field": task_field})
    if document_root:
        record["document_root"] = document_root
    record["rounds"] = sorted([r for k, r in rounds.items() if k != this_round["round"]] + [this_round],
                              key=lambda r: r["round"])
    save_record(dataset, str(int(project["id"])), record)
    # Hold every round's run for this project, so that it is not selected again under its tasks.
    numbers = [int(r["round"]) for r in record["rounds"]]
    where = f"Label Studio project {project['id']} at {conn.url}"
    fo_connector.set_holds(dataset, f"labelstudio {conn.url} project {int(project['id'])}", {
        r["run_name"]: (f"round {r['round']} of {where}", [k for k in numbers if k > int(r["round"])])
        for r in record["rounds"]})
    return project, document_root


def _store_task_ids(dataset, task_field, project_id, pushed, present_ids, previous):
    """Store each pushed sample's task id in ``task_field``; returns how many samples got a new task."""
    import fiftyone as fo

    if task_field not in dataset.get_field_schema():
        dataset.add_sample_field(task_field, fo.IntField,
                                 description=f"Label Studio task id (activeft sync, project {int(project_id)})")
    task_ids = {sid: int(pushed[sid]) for sid in present_ids if sid in pushed}
    recreated = sum(1 for sid, tid in task_ids.items() if previous.get(sid) not in (None, tid))
    changed = {sid: tid for sid, tid in task_ids.items() if previous.get(sid) != tid}
    if changed:
        dataset.set_values(task_field, changed, key_field="id")
    return recreated


def _sample_values(dataset, sample_ids, task_field):
    """(set of ids present, {id: filepath}, {id: stored task id}) for ``sample_ids``."""
    view = dataset.select(sample_ids)
    if task_field in dataset.get_field_schema():
        ids, paths, tasks = view.values(["id", "filepath", task_field])
    else:
        ids, paths = view.values(["id", "filepath"])
        tasks = [None] * len(ids)
    return set(ids), dict(zip(ids, paths)), dict(zip(ids, tasks))
