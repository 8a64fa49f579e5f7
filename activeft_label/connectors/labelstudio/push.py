"""Pushing a ranked selection: task imports and updates, the priority view, the priority predictions."""

import concurrent.futures
from dataclasses import dataclass, field

from ...errors import ActiveFTError, InputError
from ._http import (as_dict, call_sdk, http_error, is_transient_status, progress_bar, request_json, sleep_before_retry,
                    transport_error)
from .fields import ID_FIELD, MODEL_VERSION, RANK_FIELD, VIEW_TITLE
from .projects import get_project, project_url
from .pull import pull_tasks

#: Tasks per import request.
IMPORT_BATCH = 500


@dataclass
class PushReport:
    """What a push changed.

    ``project_id``, ``view_id`` (the "ActiveFT priority" view), ``created``
    (tasks imported), ``updated`` (tasks whose data changed), ``unchanged``,
    ``cleared`` (tasks of an earlier selection whose rank was removed),
    ``predictions`` (priority predictions written or changed), ``uploaded``
    (image files uploaded), ``reused_uploads`` (files an interrupted earlier
    run had uploaded, used instead of uploading them again), ``url`` (the
    view in the browser),
    ``warnings``, ``images`` (how a setup brought the images in:
    ``"upload"`` or ``"local-files"``) and ``task_ids`` ({stable id: task
    id} of the pushed items, for :func:`push_project` and :func:`push_images`).
    """

    project_id: int
    view_id: int = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    predictions: int = 0
    uploaded: int = 0
    reused_uploads: int = 0
    url: str = ""
    warnings: list = field(default_factory=list)
    images: str = ""
    task_ids: dict = field(default_factory=dict)


def tasks_by_stable_id(conn, project_id):
    """Tasks of a project by their stable id, and every task by task id."""
    tasks = pull_tasks(conn, project_id)
    by_id = {}
    for task in tasks:
        value = task["data"].get(ID_FIELD)
        if value not in (None, "") and str(value) not in by_id:
            by_id[str(value)] = task
    return by_id, {task["id"]: task for task in tasks}


def _patch_many(conn, updates, what, progress, workers=4):
    """PATCH the data of many tasks: ``updates`` is a list of (task id, new data)."""
    if not updates:
        return

    def one(item):
        task_id, data = item
        call_sdk(conn, f"update task {task_id}", conn.client.tasks.update, id=str(task_id), data=data)

    bar = progress_bar(progress, len(updates), what, "task")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, updates):
            if bar:
                bar.update(1)
    if bar:
        bar.close()


def _plan(all_tasks, wanted, extra=None):
    """Data changes that give ``wanted`` ({task id: (rank, stable id)}) their rank and clear every other rank.

    ``extra`` ({task id: dict}) is merged into the data of wanted tasks first.
    Returns (updates as [(task id, new data)], number cleared, number of wanted tasks left unchanged).
    """
    updates, cleared, unchanged = [], 0, 0
    extra = extra or {}
    for task_id, task in sorted(all_tasks.items()):
        data = task["data"]
        if task_id in wanted:
            rank, sid = wanted[task_id]
            new = {**data, **extra.get(task_id, {})}
            new[RANK_FIELD] = int(rank)
            if new.get(ID_FIELD) in (None, ""):
                new[ID_FIELD] = sid
            if new != data:
                updates.append((task_id, new))
            else:
                unchanged += 1
        elif RANK_FIELD in data:
            updates.append((task_id, {key: value for key, value in data.items() if key != RANK_FIELD}))
            cleared += 1
    return updates, cleared, unchanged


#: Task columns of Label Studio's Data Manager (``data_manager/functions.py:get_all_columns`` of label-studio
#: 1.23), hidden in the priority view when the server does not list its columns: none of them helps to label.
TASK_COLUMNS = ("id", "inner_id", "completed_at", "total_annotations", "cancelled_annotations", "total_predictions",
                "annotators", "annotations_results", "annotations_ids", "predictions_score",
                "predictions_model_versions", "predictions_results", "file_upload", "storage_filename", "created_at",
                "updated_at", "updated_by", "avg_lead_time", "draft_exists")


def _column_ids(conn, project_id):
    """(every column id of the project's Data Manager, the ids of the label config's data fields).

    Ids as the Data Manager front end forms them and as a view's
    ``hiddenColumns`` names them: ``tasks:<id>`` for task columns,
    ``tasks:data.<key>`` for task data.  From ``GET /api/dm/columns``; the
    task columns of :data:`TASK_COLUMNS` when the server does not answer it.
    """
    try:
        answer = request_json(conn, "GET", "/api/dm/columns/", f"list the Data Manager columns of project {project_id}",
                              params={"project": int(project_id)}, not_found="no Data Manager columns")
        columns = answer.get("columns") if isinstance(answer, dict) else None
    except InputError:
        columns = None
    if not isinstance(columns, list):
        return [f"tasks:{name}" for name in TASK_COLUMNS] + [f"tasks:data.{ID_FIELD}"], []
    every, labeled = [], []
    for column in columns:
        if not isinstance(column, dict) or column.get("target", "tasks") != "tasks" or column.get("children"):
            continue  # another target's columns, or the "data" group (shown while any of its children is)
        parent = column.get("parent")
        key = f"tasks:{parent}.{column['id']}" if parent else f"tasks:{column['id']}"
        every.append(key)
        if parent == "data" and (column.get("visibility_defaults") or {}).get("labeling"):
            labeled.append(key)  # a field of the label config: what the annotator labels (the image)
    return every, labeled


def priority_view_data(conn, project_id, title=VIEW_TITLE):
    """The ``data`` of the priority view: ranked tasks only, by rank; the image and the rank as its first columns.

    Label Studio's Data Manager has no per-view column order: it shows the
    task columns (ID, Completed, Annotations, ...) first and the task data
    after them, the label config's fields (the image) first among those.  So
    the view hides, in both its list (``explore``) and its labeling side list
    (``labeling``), every column but the label config's data fields and
    ``activeft_rank``: the image thumbnail comes first, the rank next.
    ``activeft_id`` (a path that may name a class folder) and the other task
    data are hidden too.  ``columnsDisplayType`` makes the rank a number, so
    it sorts 1, 2, ..., 10 rather than as text.
    """
    column = f"tasks:data.{RANK_FIELD}"
    every, labeled = _column_ids(conn, project_id)
    shown = set(labeled) | {column}
    hidden = [key for key in every if key not in shown]
    return {
        "title": title,
        "type": "list",
        "target": "tasks",
        "ordering": [column],
        "filters": {"conjunction": "and", "items": [
            {"filter": f"filter:{column}", "operator": "greater", "type": "Number", "value": 0}]},
        "hiddenColumns": {"explore": list(hidden), "labeling": list(hidden)},
        "columnsDisplayType": {column: "Number"},
    }


def ensure_priority_view(conn, project_id, title=VIEW_TITLE):
    """Create or replace the Data Manager view that lists ranked tasks in rank order; returns its id.

    Its data is :func:`priority_view_data`; a view that already holds it is
    left as it is.
    """
    data = priority_view_data(conn, project_id, title)
    views = [as_dict(v) for v in call_sdk(conn, f"list the views of project {project_id}", conn.client.views.list,
                                          project=int(project_id))]
    ours = sorted((v for v in views if (v.get("data") or {}).get("title") == title), key=lambda v: v["id"])
    if ours:
        view_id = int(ours[0]["id"])
        if not _same_view_data(ours[0].get("data") or {}, data):
            call_sdk(conn, f"update view {view_id}", conn.client.views.update, id=str(view_id),
                     project=int(project_id), data=data)
        for extra in ours[1:]:
            call_sdk(conn, f"delete view {extra['id']}", conn.client.views.delete, id=str(extra["id"]))
        return view_id
    view = as_dict(call_sdk(conn, f"create the {title!r} view", conn.client.views.create, project=int(project_id),
                            data=data))
    return int(view["id"])


def _same_view_data(stored, wanted):
    """Whether a stored view's data already is ``wanted`` (the keys ``wanted`` sets; filters by their items)."""
    for key, value in wanted.items():
        have = stored.get(key)
        if key == "filters":
            strip = ("conjunction", "items")
            have = {k: (have or {}).get(k) for k in strip}
            items = [{k: item.get(k) for k in ("filter", "operator", "type", "value")}
                     for item in have.get("items") or []]
            have = {"conjunction": have.get("conjunction"), "items": items}
        elif key == "hiddenColumns":
            have = {k: sorted((have or {}).get(k) or []) for k in ("explore", "labeling")}
            value = {k: sorted(v) for k, v in value.items()}
        if have != value:
            return False
    return True


def _sync_predictions(conn, project_id, ranks, model_version, progress):
    """Give each ranked task one prediction (score = rank/(B+1)) of ``model_version``; remove the others'."""
    total = len(ranks)
    wanted = {task_id: round(rank / (total + 1), 6) for task_id, rank in ranks.items()}
    existing = {}
    stale = []
    for prediction in call_sdk(conn, f"list the predictions of project {project_id}", conn.client.predictions.list,
                               project=int(project_id)):
        prediction = as_dict(prediction)
        if prediction.get("model_version") != model_version:
            continue
        task_id = int(prediction["task"])
        if task_id in wanted and task_id not in existing:
            existing[task_id] = prediction
        else:
            stale.append(prediction["id"])
    changed = 0
    create = [{"task": task_id, "result": [], "score": score, "model_version": model_version}
              for task_id, score in sorted(wanted.items(), key=lambda kv: kv[1]) if task_id not in existing]
    def send(pending):
        conn.client.projects.import_predictions(id=int(project_id), request=pending)

    def still_missing(pending):
        have = {int(as_dict(p)["task"]) for p in call_sdk(conn, "list predictions", conn.client.predictions.list,
                                                          project=int(project_id))
                if as_dict(p).get("model_version") == model_version}
        return [p for p in pending if p["task"] not in have]

    for start in range(0, len(create), IMPORT_BATCH):
        _create_once(conn, f"import predictions into project {project_id}", send, still_missing,
                     create[start:start + IMPORT_BATCH])
    changed += len(create)
    rescore = [(p["id"], wanted[task_id]) for task_id, p in existing.items()
               if abs(float(p.get("score") or 0) - wanted[task_id]) > 1e-9]

    def update(item):
        call_sdk(conn, "update a prediction", conn.client.predictions.update, id=int(item[0]), score=item[1],
                 model_version=model_version)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(update, rescore))
        list(pool.map(lambda prediction_id: _delete_prediction(conn, prediction_id), stale))
    changed += len(rescore) + len(stale)
    project = get_project(conn, project_id)
    if project.get("model_version") != model_version:
        call_sdk(conn, "set the project's model version", conn.client.projects.update, id=int(project_id),
                 model_version=model_version)
    return changed


def _delete_prediction(conn, prediction_id):
    try:
        call_sdk(conn, "delete a prediction", conn.client.predictions.delete, id=int(prediction_id),
                 not_found="gone")
    except InputError as exc:
        if str(exc) != "gone":
            raise


def push_view(conn, project_id, ranking, *, stable_ids=None, predictions=False, model_version=MODEL_VERSION,
              progress=True):
    """Mark a selection in place: ranks in task data, the priority view, optional predictions.

    Parameters
    ----------
    conn : Connection
    project_id : int
    ranking : dict {task id: rank}
        The selected tasks of the project and their ranks (1 = first).
    stable_ids : dict {task id: str}, optional
        Written as ``activeft_id`` into tasks that have none yet.
    predictions : bool, default=False
        Also write priority predictions and set the project's model version
        (for "Uncertainty sampling").
    model_version : str, default="activeft"
    progress : bool, default=True

    Returns
    -------
    PushReport
    """
    project_id = int(project_id)
    stable_ids = stable_ids or {}
    _, all_tasks = tasks_by_stable_id(conn, project_id)
    missing = sorted(set(ranking) - set(all_tasks))
    if missing:
        raise InputError(f"project {project_id} has no task(s) {missing[:5]}; pull the project again")
    wanted = {int(t): (int(r), stable_ids.get(t) or f"labelstudio:{project_id}/{int(t)}") for t, r in ranking.items()}
    updates, cleared, unchanged = _plan(all_tasks, wanted)
    report = PushReport(project_id=project_id, cleared=cleared, unchanged=unchanged,
                        updated=len(updates) - cleared)
    _patch_many(conn, updates, "Writing ranks", progress)
    if predictions:
        report.predictions = _sync_predictions(conn, project_id, {t: r for t, (r, _) in wanted.items()},
                                               model_version, progress)
    report.view_id = ensure_priority_view(conn, project_id)
    report.url = project_url(conn, project_id, report.view_id)
    return report


def check_unique_ids(items):
    """InputError naming the ids that occur more than once among ``items`` (dicts with an ``id``)."""
    seen, twice = set(), []
    for item in items:
        key = str(item["id"])
        if key in seen and key not in twice:
            twice.append(key)
        seen.add(key)
    if twice:
        shown = ", ".join(repr(t) for t in twice[:5]) + (f" and {len(twice) - 5} more" if len(twice) > 5 else "")
        raise InputError(f"the items to push have duplicate ids ({shown}); each item may be queued once: remove "
                         f"the repeats, nothing was pushed")


def push_project(conn, project_id, items, *, batch_size=IMPORT_BATCH, predictions=False,
                 model_version=MODEL_VERSION, progress=True, _listing=None):
    """Put ranked items into a project, idempotently, imported in rank order.

    Parameters
    ----------
    conn : Connection
    project_id : int
    items : list of dict
        ``{"id": stable id, "rank": int, "data": {...}}``; ``data`` must hold
        what the label config needs (e.g. the image URL).  A task that
        already carries the item's ``activeft_id`` is updated (its other data
        kept), never duplicated; missing ones are imported in rank order in
        batches of ``batch_size``.  Tasks of earlier selections that are not
        among ``items`` lose their rank.
    batch_size : int, default=500
    predictions : bool, default=False
        Also write priority predictions (see :func:`push_view`).
    model_version : str, default="activeft"
    progress : bool, default=True

    Returns
    -------
    PushReport
    """
    project_id = int(project_id)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    check_unique_ids(items)
    by_id, all_tasks = _listing or tasks_by_stable_id(conn, project_id)
    report = PushReport(project_id=project_id)
    ordered = sorted(items, key=lambda item: int(item["rank"]))
    todo = [item for item in ordered if str(item["id"]) not in by_id]
    bar = progress_bar(progress, len(todo), "Importing tasks", "task")
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        import_task_batch(conn, project_id, batch)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    report.created = len(todo)
    if todo:
        by_id, all_tasks = tasks_by_stable_id(conn, project_id)
    wanted, extra = {}, {}
    for item in ordered:
        task = by_id.get(str(item["id"]))
        if task is None:
            raise ActiveFTError(f"item {item['id']!r} is missing from project {project_id} after the import; "
                                f"run the command again")
        wanted[task["id"]] = (int(item["rank"]), str(item["id"]))
        extra[task["id"]] = item["data"]
        report.task_ids[str(item["id"])] = int(task["id"])
    updates, report.cleared, unchanged = _plan(all_tasks, wanted, extra)
    _patch_many(conn, updates, "Updating tasks", progress)
    report.updated = len(updates) - report.cleared
    report.unchanged = unchanged - report.created
    if predictions:
        report.predictions = _sync_predictions(conn, project_id, {t: r for t, (r, _) in wanted.items()},
                                               model_version, progress)
    report.view_id = ensure_priority_view(conn, project_id)
    report.url = project_url(conn, project_id, report.view_id)
    return report


def import_task_batch(conn, project_id, batch):
    """Import one batch of items (with rank and id in their data); safe to retry after a lost answer."""

    def send(pending):
        payload = [{"data": {**item["data"], ID_FIELD: str(item["id"]), RANK_FIELD: int(item["rank"])}}
                   for item in pending]
        conn.client.projects.import_tasks(id=project_id, request=payload, return_task_ids=True)

    def still_missing(pending):
        by_id, _ = tasks_by_stable_id(conn, project_id)
        return [item for item in pending if str(item["id"]) not in by_id]

    _create_once(conn, f"import tasks into project {project_id}", send, still_missing, list(batch))


def _create_once(conn, what, send, still_missing, pending):
    """``send(pending)``, retrying transient failures; before each retry ``still_missing`` drops what arrived.

    A request whose answer was lost (connection reset, 502 after the server
    did the work) is thus never applied twice.
    """
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    for attempt in range(conn.retries + 1):
        try:
            send(pending)
            return
        except ApiError as exc:
            status = exc.status_code or 0
            if not is_transient_status(status) or attempt == conn.retries:
                raise http_error(conn, what, status, exc.body) from None
        except httpx.HTTPError as exc:
            if not isinstance(exc, httpx.TransportError) or attempt == conn.retries:
                raise transport_error(conn, what, exc) from None
        sleep_before_retry(conn, attempt)
        pending = still_missing(pending)
        if not pending:
            return
