"""FiftyOne ↔ Label Studio: select in FiftyOne, annotate in Label Studio in priority order, labels back.

The only module that knows both connectors.  Three functions, each safe to
run again at any point (after a crash, a kill, a server restart):

:func:`push`
    Selects samples of a FiftyOne dataset or view (or reuses the selection
    run of that name), puts them into a Label Studio project as tasks in
    rank order with the "ActiveFT priority" view, and stores on each sample
    the id of its task (``task_field``, default ``activeft_ls_task``).  Each
    task carries the sample id as ``activeft_id``: that, not the task's
    position, is what maps tasks back to samples.  ``round=2, 3, ...``
    selects more samples with every sample already queued as a fixed
    centroid, and queues them after the earlier rounds.
:func:`pull`
    Reads the project's annotations and writes them to a label field by the
    sample id in each task: Choices → ``fo.Classification`` (or
    ``fo.Classifications`` for ``choice="multiple"``), RectangleLabels →
    ``fo.Detections`` with boxes in FiftyOne's relative ``[x, y, w, h]``
    (Label Studio stores percentages of the image size; both measure from
    the top-left corner).  Of several annotations of a task the latest
    non-cancelled one counts; a task whose annotations were all cancelled
    (skipped by the annotator) gives no label.  A label that differs from
    the one already in the field is only replaced with ``overwrite``.  Each
    written label records ``ls_task_id`` and ``ls_annotation_id``.
:func:`status`
    Per round: samples selected, pushed (a task exists), annotated, pulled.

What a push wrote is recorded in ``dataset.info["activeft_labelstudio"]``
(per project: server, task field, rounds and their selection runs).
"""

import time
from dataclasses import dataclass, field

from .connectors import fiftyone as fo_connector
from .connectors import labelstudio as ls_connector
from .errors import InputError

#: Sample field that holds each pushed sample's Label Studio task id.
TASK_FIELD = "activeft_ls_task"
#: Key of the sync record in ``dataset.info``.
STATE_KEY = "activeft_labelstudio"

__all__ = ["TASK_FIELD", "STATE_KEY", "PushResult", "PullResult", "StatusRow", "push", "pull", "status",
           "round_run_name"]


@dataclass
class PushResult:
    """What :func:`push` did.

    ``project_id``, ``project_title``, ``round``, ``run_name`` (the FiftyOne
    selection run of this round), ``reused`` (the run existed and was reused
    instead of selecting again), ``selected`` (samples of this round),
    ``queued`` (samples of every round in the project's queue), ``created`` /
    ``updated`` / ``unchanged`` tasks, ``cleared`` (tasks of earlier
    selections, not in this queue, whose rank was removed), ``uploaded`` images, ``recreated``
    (samples whose earlier task was gone and got a new one),
    ``missing_samples`` (ids of the selection no longer in the dataset),
    ``url`` (the priority view), ``warnings``, ``elapsed`` (s),
    ``selection`` (the FiftyOne SelectionSummary when selected now).
    """

    project_id: int
    project_title: str
    round: int
    run_name: str
    reused: bool
    selected: int
    queued: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    uploaded: int = 0
    recreated: int = 0
    missing_samples: list = field(default_factory=list)
    url: str = ""
    warnings: list = field(default_factory=list)
    elapsed: float = 0.0
    selection: object = None

    def describe(self):
        how = "reused the selection run" if self.reused else "selected"
        lines = [f"Round {self.round}: {how} {self.run_name!r} ({self.selected} samples); "
                 f"{self.queued} samples queued in Label Studio project {self.project_id} ({self.project_title}).",
                 f"Tasks: {self.created} created, {self.updated} updated, {self.unchanged} unchanged"
                 + (f", {self.cleared} no longer in the queue (rank removed)" if self.cleared else "")
                 + (f", {self.uploaded} images uploaded" if self.uploaded else "") + "."]
        if self.recreated:
            lines.append(f"{self.recreated} task(s) had been deleted in Label Studio and were created again.")
        if self.missing_samples:
            lines.append(f"{len(self.missing_samples)} selected sample(s) are no longer in the dataset and were left "
                         f"out (e.g. {self.missing_samples[0]}).")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        lines.append(f"Priority view: {self.url}")
        return "\n".join(lines)


@dataclass
class PullResult:
    """What :func:`pull` did.

    ``label_field``, ``control`` (the Label Studio control read), ``kind``
    (``classification`` / ``detection``), ``annotated`` (tasks with an
    annotation that counts), sample ids ``written``, ``unchanged`` and
    ``conflicts`` (a different label was there; kept without ``overwrite``),
    ``cancelled`` (task ids whose annotations were all cancelled),
    ``several`` (task ids with more than one annotation: the latest counted),
    ``empty`` (task ids whose annotation has nothing for the control),
    ``foreign`` (task ids without an ``activeft_id``: not pushed by activeft),
    ``missing_samples`` (task ids whose sample is gone from the dataset),
    ``deleted_tasks`` (sample ids whose task is gone from the project),
    ``problems`` (results that could not be converted), ``elapsed`` (s).
    """

    label_field: str
    control: str
    kind: str
    annotated: int = 0
    written: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    cancelled: list = field(default_factory=list)
    several: list = field(default_factory=list)
    empty: list = field(default_factory=list)
    foreign: list = field(default_factory=list)
    missing_samples: list = field(default_factory=list)
    deleted_tasks: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    elapsed: float = 0.0

    def describe(self):
        lines = [f"{self.annotated} annotated task(s) read from control {self.control!r} ({self.kind}): "
                 f"{len(self.written)} label(s) written to {self.label_field!r}, {len(self.unchanged)} unchanged."]
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} sample(s) already hold a different label in {self.label_field!r} "
                         f"and were left as they are (e.g. {self.conflicts[0]}); pass --overwrite to replace them.")
        if self.several:
            lines.append(f"{len(self.several)} task(s) have several annotations: the latest non-cancelled one was "
                         f"used.")
        if self.cancelled:
            lines.append(f"{len(self.cancelled)} task(s) were skipped by the annotators (only cancelled "
                         f"annotations): no label.")
        if self.empty:
            lines.append(f"{len(self.empty)} annotation(s) have no {self.control!r} result: no label.")
        if self.missing_samples:
            lines.append(f"{len(self.missing_samples)} task(s) belong to samples that are not in the dataset (deleted) "
                         f"or not in the target view (e.g. task {self.missing_samples[0]}): skipped.")
        if self.deleted_tasks:
            lines.append(f"{len(self.deleted_tasks)} pushed sample(s) have no task in the project any more (deleted "
                         f"in Label Studio; e.g. sample {self.deleted_tasks[0]}); `activeft sync push` creates them "
                         f"again.")
        if self.foreign:
            lines.append(f"{len(self.foreign)} annotated task(s) were not pushed by activeft (no activeft_id): "
                         f"ignored.")
        for problem in self.problems[:5]:
            lines.append(f"Warning: {problem}")
        if len(self.problems) > 5:
            lines.append(f"... and {len(self.problems) - 5} more warnings.")
        return "\n".join(lines)


@dataclass
class StatusRow:
    """One row of :func:`status`: a round (or ``"total"``) and its counts."""

    round: object
    run_name: str
    selected: int
    pushed: int
    annotated: int
    pulled: int


# --------------------------------------------------------------------------------------------------------------
# The sync record


def round_run_name(run_name, round_number):
    """Name of the FiftyOne selection run of a round: ``run_name`` for round 1, ``run_name_roundK`` after."""
    return run_name if int(round_number) == 1 else f"{run_name}_round{int(round_number)}"


def _records(dataset):
    return dict(dataset.info.get(STATE_KEY) or {})


def _save_record(dataset, project_key, record):
    records = _records(dataset)
    records[project_key] = record
    dataset.info[STATE_KEY] = records
    dataset.save()


def _project_record(dataset, project_id):
    return _records(dataset).get(str(int(project_id)))


def _check_task_field(dataset, task_field, project_id):
    import fiftyone as fo

    for key, record in _records(dataset).items():
        if record.get("task_field") == task_field and key != str(int(project_id)):
            raise InputError(f"field {task_field!r} of dataset {dataset.name!r} already holds the tasks of Label "
                             f"Studio project {key}; pass another --task-field for project {project_id}")
    schema = dataset.get_field_schema()
    if task_field in schema and not isinstance(schema[task_field], fo.IntField):
        raise InputError(f"field {task_field!r} of dataset {dataset.name!r} is a {type(schema[task_field]).__name__}, "
                         f"not the integer task-id field activeft writes; pass another --task-field")


# --------------------------------------------------------------------------------------------------------------
# Push


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
         images="auto", document_root=None, batch_size=ls_connector.IMPORT_BATCH, selection_options=None,
         progress=True):
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
        later round was pushed).
    task_field : str, default="activeft_ls_task"
        Integer sample field that receives each pushed sample's task id.
    images, document_root, batch_size
        How images reach the server and tasks per import request (see
        :func:`activeft_label.connectors.labelstudio.push_images`).  A push
        that leaves ``images="auto"`` and no ``document_root`` uses the
        document root an earlier push to this project was given.
    selection_options : dict, optional
        Passed to :func:`activeft_label.connectors.fiftyone.select_samples`
        (method, embeddings_field, model, loss, iterations, seed, tag, ...).
    progress : bool or callable, default=True
        ``True`` shows progress bars; a callable gets ``(fraction, message)``.

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
    if round_number < 1:
        raise InputError(f"--round must be 1 or more, got {round_number}")
    options = dict(selection_options or {})
    for reserved in ("run_name", "rank_offset", "progress"):
        if reserved in options:
            raise InputError(f"selection option {reserved!r} is set by sync push itself")
    # Explicit local files: every candidate image must lie under the root, known before anything is written.
    ls_connector.check_images_option(collection.values("filepath") if images == "local-files" else [], images,
                                     document_root)
    project, title, create_config = _resolve_project(conn, project_id, title, labels, task)
    if project is not None:
        _check_task_field(dataset, task_field, project["id"])
        try:
            ls_connector.image_field(project.get("label_config"))
        except InputError:
            raise InputError(f"Label Studio project {project['id']}'s label config has no <Image value=\"$...\"> "
                             f"tag for the pushed images to go to; add one in the project's Labeling Setup, or push "
                             f"to a new project with --title and --labels") from None
    record = _project_record(dataset, project["id"]) if project is not None else None
    rounds = {int(r["round"]): r for r in (record or {}).get("rounds", [])}
    if round_number > 1:
        earlier = [k for k in range(1, round_number) if k not in rounds]
        if project is None or earlier:
            raise InputError(f"round {round_number} needs round(s) {', '.join(map(str, earlier or [1]))} pushed to "
                             f"this project first (activeft sync push --round {(earlier or [1])[0]} ...)")
    later = [k for k in rounds if k > round_number]

    name = round_run_name(run_name, round_number)
    existing = fo_connector.get_run(dataset, name)
    if existing is not None and not reselect:
        count = len(existing.get("sample_ids", []))
        if budget is not None and str(budget) != str(existing.get("budget_spec")) and str(budget) != str(count):
            raise InputError(f"selection run {name!r} already selected {count} samples (budget "
                             f"{existing.get('budget_spec')}); leave out --budget to push it, pass --reselect to "
                             f"select again, or choose another --run-name")
        reused, summary = True, None
    else:
        if reselect and later:
            raise InputError(f"round {round_number} cannot be selected again: round(s) {sorted(later)} were pushed "
                             f"after it")
        if budget is None:
            raise InputError(f"there is no selection run {name!r} yet: pass --budget N or P% to select")
        offset = 0
        exclude = list(options.pop("exclude_labeled", None) or [])
        if round_number > 1:
            offset = max(int(r["rank_offset"]) + int(r["count"]) for k, r in rounds.items() if k < round_number)
            if task_field not in exclude:
                exclude.append(task_field)
        on_progress = progress if callable(progress) else None
        summary = fo_connector.select_samples(
            collection, budget, run_name=name, exclude_labeled=exclude or None, rank_offset=offset,
            progress=(lambda f, m: on_progress(0.8 * f, m)) if on_progress else progress, **options)
        existing = fo_connector.get_run(dataset, name)
        reused = False

    offset = int(existing.get("rank_offset") or 0)
    this_round = {"round": round_number, "run_name": name, "count": len(existing.get("sample_ids", [])),
                  "rank_offset": offset}

    # The queue: every round of this project (the earlier ones as they were pushed) plus this one.
    queue = []
    for k in sorted(set(rounds) | {round_number}):
        info = this_round if k == round_number else rounds[k]
        run = existing if k == round_number else fo_connector.get_run(dataset, info["run_name"])
        if run is None:
            raise InputError(f"the selection run {info['run_name']!r} of round {k} is gone from dataset "
                             f"{dataset.name!r}; push round {k} again (activeft sync push --round {k} --reselect "
                             f"...)")
        start = int(run.get("rank_offset") or 0)
        queue.extend((sid, start + i) for i, sid in enumerate(run.get("sample_ids", []), start=1))
    wanted_ids = [sid for sid, _ in queue]
    present_ids, paths, previous = _sample_values(dataset, wanted_ids, task_field)
    missing = [sid for sid in wanted_ids if sid not in present_ids]
    entries = [{"id": sid, "rank": rank, "path": paths[sid]} for sid, rank in queue if sid in present_ids]
    if not entries:
        raise InputError(f"none of the {len(wanted_ids)} selected samples are in dataset {dataset.name!r} any more; "
                         f"push again with --reselect")

    # Writes start here.
    if project is None:
        project = ls_connector.create_project(conn, title, create_config, description=(
            f"ActiveFT selection from FiftyOne dataset {dataset.name!r}, imported in priority order (view "
            f"'{ls_connector.VIEW_TITLE}' lists it by rank)."))
        _check_task_field(dataset, task_field, project["id"])
    project_key = str(int(project["id"]))
    record = dict(_project_record(dataset, project["id"]) or {})
    if images == "auto" and document_root is None and record.get("document_root"):
        document_root = record["document_root"]  # a later round serves images the way the first one did
    record.update({"url": conn.url, "title": project.get("title", title), "task_field": task_field})
    if document_root:
        record["document_root"] = document_root
    record["rounds"] = sorted([r for k, r in rounds.items() if k != round_number] + [this_round],
                              key=lambda r: r["round"])
    _save_record(dataset, project_key, record)

    if callable(progress):
        progress(0.8, f"queueing {len(entries)} samples in Label Studio project {project_key}")
    field_name = ls_connector.image_field(project.get("label_config"))
    report = ls_connector.push_images(conn, project["id"], entries, images=images, document_root=document_root,
                                      batch_size=batch_size, field=field_name, progress=progress is True)

    import fiftyone as fo

    if task_field not in dataset.get_field_schema():
        dataset.add_sample_field(task_field, fo.IntField,
                                 description=f"Label Studio task id (activeft sync, project {project_key})")
    task_ids = {sid: int(report.task_ids[sid]) for sid in present_ids if sid in report.task_ids}
    recreated = sum(1 for sid, tid in task_ids.items() if previous.get(sid) not in (None, tid))
    changed = {sid: tid for sid, tid in task_ids.items() if previous.get(sid) != tid}
    if changed:
        dataset.set_values(task_field, changed, key_field="id")

    return PushResult(
        project_id=int(project["id"]), project_title=project.get("title", title), round=round_number, run_name=name,
        reused=reused, selected=this_round["count"], queued=len(entries), created=report.created,
        updated=report.updated, unchanged=report.unchanged, cleared=report.cleared, uploaded=report.uploaded,
        recreated=recreated,
        missing_samples=missing, url=report.url, warnings=list(report.warnings),
        elapsed=time.perf_counter() - started, selection=summary)


def _sample_values(dataset, sample_ids, task_field):
    """(set of ids present, {id: filepath}, {id: stored task id}) for ``sample_ids``."""
    view = dataset.select(sample_ids)
    if task_field in dataset.get_field_schema():
        ids, paths, tasks = view.values(["id", "filepath", task_field])
    else:
        ids, paths = view.values(["id", "filepath"])
        tasks = [None] * len(ids)
    return set(ids), dict(zip(ids, paths)), dict(zip(ids, tasks))


# --------------------------------------------------------------------------------------------------------------
# Pull


def _pick_control(project, control):
    controls = ls_connector.label_controls(project.get("label_config"))
    if not controls:
        raise InputError(f"project {project['id']}'s label config has no Choices or RectangleLabels control; "
                         f"sync pull reads those two")
    if control is not None:
        for candidate in controls:
            if candidate["name"] == control:
                return candidate
        raise InputError(f"project {project['id']} has no control named {control!r} (controls: "
                         f"{', '.join(c['name'] for c in controls)})")
    if len(controls) > 1:
        raise InputError(f"project {project['id']} has several controls ({', '.join(c['name'] for c in controls)}); "
                         f"pass --control NAME")
    return controls[0]


def _label_type(control):
    import fiftyone as fo

    if control["kind"] == "detection":
        return fo.Detections
    return fo.Classifications if control["multiple"] else fo.Classification


def _to_label(record, control):
    """The FiftyOne label of one task's annotation, or None when it has nothing for the control."""
    import fiftyone as fo

    provenance = {"ls_task_id": record.task_id, "ls_annotation_id": record.annotation_id}
    if control["kind"] == "detection":
        detections = [fo.Detection(label=label, bounding_box=[x, y, w, h]) for label, x, y, w, h in record.boxes]
        return fo.Detections(detections=detections, **provenance)
    if not record.choices:
        return None
    if control["multiple"]:
        return fo.Classifications(classifications=[fo.Classification(label=c) for c in record.choices], **provenance)
    return fo.Classification(label=record.choices[0], **provenance)


def pull(collection, conn, project_id, label_field, *, overwrite=False, control=None, task_field=None):
    """Write the finished annotations of a Label Studio project to a label field, by sample id.

    Parameters
    ----------
    collection : Dataset or DatasetView
        Only its samples receive labels (tasks of other samples are counted
        as ``missing_samples``).
    conn : Connection
    project_id : int
    label_field : str
        The label field; created when absent, else it must hold the same
        label type.
    overwrite : bool, default=False
        Replace labels that differ from the annotation.  Without it they are
        kept and reported as ``conflicts``.
    control : str, optional
        Name of the Choices / RectangleLabels control to read (needed when
        the config has several).
    task_field : str, optional
        Where :func:`push` stored the task ids (to report deleted tasks);
        default: the field the push to this project used (``activeft_ls_task``
        unless it was given another).

    Returns
    -------
    PullResult

    Running it again writes nothing new: a label equal to the one already
    there is left alone.
    """
    started = time.perf_counter()
    dataset = fo_connector.root_dataset(collection)
    project = ls_connector.get_project(conn, project_id)
    chosen = _pick_control(project, control)
    label_type = _label_type(chosen)
    record = _project_record(dataset, project["id"])
    recorded = (record or {}).get("task_field") or TASK_FIELD
    fo_connector.check_label_field(dataset, label_field, label_type, reserved=(task_field or recorded,))
    if record is None:
        raise InputError(f"dataset {dataset.name!r} has not been pushed to Label Studio project {project['id']}, so "
                         f"its tasks name none of its samples; run `activeft sync push` first (or pick the project "
                         f"it was pushed to: `activeft sync status`)")
    if task_field and task_field != recorded and task_field not in dataset.get_field_schema():
        raise InputError(f"dataset {dataset.name!r} has no field {task_field!r}; the push to project {project['id']} "
                         f"stored its task ids in {recorded!r} (leave --task-field out to use it)")
    task_field = task_field or recorded

    tasks = ls_connector.export_tasks(conn, project["id"])
    records = ls_connector.read_annotations(conn, project["id"], chosen, tasks=tasks)
    result = PullResult(label_field=label_field, control=chosen["name"], kind=chosen["kind"])
    in_target = set(collection.values("id"))
    labels = {}
    for record in records:
        if record.stable_id is None:
            result.foreign.append(record.task_id)
            continue
        if record.annotation_id is not None and record.annotations + record.cancelled > 1:
            result.several.append(record.task_id)
        if record.annotation_id is None:
            result.cancelled.append(record.task_id)
            continue
        result.problems.extend(f"task {record.task_id}: {p}" for p in record.problems)
        if record.stable_id not in in_target:
            result.missing_samples.append(record.task_id)
            continue
        label = _to_label(record, chosen)
        if label is None:
            result.empty.append(record.task_id)
            continue
        result.annotated += 1
        labels[record.stable_id] = label

    written = fo_connector.write_labels(dataset, label_field, labels, overwrite=overwrite)
    result.written, result.unchanged, result.conflicts = written.written, written.unchanged, written.conflicts
    result.missing_samples.extend(written.missing)  # deleted between the two reads

    record = _project_record(dataset, project["id"])       # read again: keep what a push meanwhile recorded
    if record is not None and task_field in dataset.get_field_schema():
        alive = {int(task["id"]) for task in tasks}
        ids, stored = collection.exists(task_field).values(["id", task_field])
        result.deleted_tasks = [sid for sid, tid in zip(ids, stored) if int(tid) not in alive]
        record = dict(record)
        record["label_field"] = label_field
        _save_record(dataset, str(int(project["id"])), record)
    result.elapsed = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------------------------
# Status


def status(collection, conn, project_id, *, label_field=None, task_field=None):
    """Selected / pushed / annotated / pulled samples per round of a project.

    ``label_field`` defaults to the field of the last :func:`pull` from this
    project; ``task_field`` to the one :func:`push` used.  Returns a list
    of :class:`StatusRow`, the last one the total.
    """
    dataset = fo_connector.root_dataset(collection)
    project = ls_connector.get_project(conn, project_id)
    record = _project_record(dataset, project["id"])
    if record is None:
        raise InputError(f"dataset {dataset.name!r} has not been pushed to Label Studio project {project['id']}; run "
                         f"`activeft sync push` first")
    task_field = task_field or record.get("task_field") or TASK_FIELD
    label_field = label_field or record.get("label_field")
    tasks = ls_connector.export_tasks(conn, project["id"])
    alive = {int(task["id"]) for task in tasks}
    annotated_tasks = {int(task["id"]) for task in tasks
                       if any(not a.get("was_cancelled") for a in task.get("annotations") or [])}
    schema = dataset.get_field_schema()
    rows = []
    totals = [0, 0, 0, 0]
    for info in record.get("rounds", []):
        run = fo_connector.get_run(dataset, info["run_name"]) or {}
        ids = list(run.get("sample_ids", []))
        view = dataset.select(ids)
        fields = ["id"] + ([task_field] if task_field in schema else []) + \
                 ([f"{label_field}.ls_task_id"] if label_field and label_field in schema else [])
        values = view.values(fields)
        columns = dict(zip(fields, values))
        stored = columns.get(task_field, [None] * len(columns["id"]))
        pulled_from = columns.get(f"{label_field}.ls_task_id", [None] * len(columns["id"]))
        pushed = sum(1 for tid in stored if tid is not None and int(tid) in alive)
        annotated = sum(1 for tid in stored if tid is not None and int(tid) in annotated_tasks)
        pulled = sum(1 for tid, src in zip(stored, pulled_from)
                     if tid is not None and src is not None and int(src) == int(tid))
        row = StatusRow(info["round"], info["run_name"], len(ids), pushed, annotated, pulled)
        rows.append(row)
        for i, value in enumerate((row.selected, row.pushed, row.annotated, row.pulled)):
            totals[i] += value
    rows.append(StatusRow("total", "", *totals))
    return rows
