"""The whole job for an existing project: pull its tasks, select, queue the selection."""

from ...errors import InputError
from .fields import ID_FIELD, MODEL_VERSION, RANK_FIELD
from .projects import (
    TITLE_LENGTH, check_title, create_project, find_project, get_project, normalize_config, project_url,
)
from .pull import embed_tasks, image_field, image_ref_kind, pull_tasks, stable_id
from .push import push_project, push_view


def prioritize(conn, project_id, budget, *, mode="view", view=None, field=None, title=None, predictions=False,
               model_version=MODEL_VERSION, method="activeft", select_options=None, embed_options=None,
               progress=True):
    """Pull a project, select ``budget`` tasks, and push them as a prioritized annotation queue.

    Parameters
    ----------
    conn : Connection
    project_id : int
    budget : int or str
        A count, or a percentage (``"5%"``) of the project's tasks whose images
        could be read, annotated ones included (a percentage is always of the
        whole pool); the count is selected from the tasks not yet annotated.
    mode : {"view", "project"}
        ``view``: ranks, the priority view (and optional predictions) in the
        project itself.  ``project``: a new project (``title``, default
        "<title> - ActiveFT") that receives only the selected tasks, in rank
        order, on "Sequential sampling"; running it again updates that project.
    view : int, optional
        Only consider the tasks of this Data Manager view.
    field : str, optional
        Task data field of the image (default: from the label config).
    title : str, optional
        Title of the new project (``mode="project"``).
    predictions : bool, default=False
        Also write priority predictions (see :func:`push_view`).
    model_version : str, default="activeft"
    method : str, default="activeft"
    select_options : dict, optional
        Passed to :func:`activeft_label.selection.select`.
    embed_options : dict, optional
        Passed to :func:`embed_tasks` (model, pretrained, device, ...).
    progress : bool, default=True

    Returns
    -------
    (LabelStudioPool, SelectionResult, PushReport)

    Tasks that already have annotations are not selected again; they act as
    fixed centroids, so the new picks cover what they do not.
    """
    from ...budget import parse_budget
    from ...selection import select

    if mode not in ("view", "project"):
        raise InputError(f"mode must be 'view' or 'project', got {mode!r}")
    project = get_project(conn, project_id)
    tasks = pull_tasks(conn, project["id"], view)
    if not tasks:
        where = f"view {view} of project {project['id']}" if view is not None else f"project {project['id']}"
        raise InputError(f"{where} has no tasks; import some first")
    unlabeled = sum(1 for task in tasks if task["annotations"] == 0)
    _check_budget(parse_budget, budget, len(tasks), len(tasks) - unlabeled, project["id"])
    name = image_field(project.get("label_config"), tasks, field)
    if mode == "project":
        suffix = " - ActiveFT"
        target_title = title or f"{project['title'][:TITLE_LENGTH[1] - len(suffix)]}{suffix}"
        check_title(target_title)
        target = _reusable_copy_target(conn, project, target_title, tasks if view is None else None)
    pool = embed_tasks(conn, project, tasks, name, progress=progress, **(embed_options or {}))
    _check_budget(parse_budget, budget, len(pool), pool.labeled.size, project["id"], skipped=len(pool.skipped))
    result = select(pool.features, budget, method, fixed=pool.labeled if pool.labeled.size else None,
                    progress=progress, **(select_options or {}))
    ranked_rows = [int(r) for r in result.ranked_indices]
    if mode == "view":
        ranking = {pool.task_ids([row])[0]: rank for rank, row in enumerate(ranked_rows, start=1)}
        ids = {pool.task_ids([row])[0]: pool.ids[row] for row in ranked_rows}
        report = push_view(conn, project["id"], ranking, stable_ids=ids, predictions=predictions,
                           model_version=model_version, progress=progress)
    else:
        target = target or create_project(conn, target_title, project.get("label_config") or "",
                                          description=f"ActiveFT selection from project {project['id']} "
                                                      f"({project['title']}), in priority order.")
        items = []
        warnings = []
        for rank, row in enumerate(ranked_rows, start=1):
            task = pool.tasks[int(pool.rows[row])]
            data = {key: value for key, value in task["data"].items() if key != RANK_FIELD}
            items.append({"id": pool.ids[row], "rank": rank, "data": data})
        cloud = sum(1 for item in items if image_ref_kind(item["data"].get(name)) == "storage")
        if cloud:
            warnings.append(f"{cloud} selected task(s) reference cloud storage; connect the same storage to project "
                            f"{target['id']} (no sync needed) so Label Studio can resolve their images")
        report = push_project(conn, target["id"], items, predictions=predictions, model_version=model_version,
                              progress=progress)
        report.warnings.extend(warnings)
    return pool, result, report


def _reusable_copy_target(conn, source, title, source_tasks=None):
    """The project titled ``title`` that a ``--mode project`` run may fill again, or None when there is none.

    It is reused only when it is a copy of ``source``: the same label config, and every task it holds a copy of a
    task of ``source`` (so a re-run completes it).  Anything else, such as a project made by hand or by
    ``activeft labelstudio setup`` from a folder, would get its queue replaced, and is refused.
    """
    found = find_project(conn, title)
    if not found:
        return None
    target = found[0]
    where = f"a project titled {title!r} already exists ({project_url(conn, target['id'])})"
    if int(target["id"]) == int(source["id"]):
        raise InputError(f"--title {title!r} names the source project itself; choose another title")
    if normalize_config(target.get("label_config")) != normalize_config(source.get("label_config")):
        raise InputError(f"{where} with another label config than project {source['id']}; choose another --title")
    if source_tasks is None:
        source_tasks = pull_tasks(conn, source["id"])
    copies = {stable_id(source["id"], task) for task in source_tasks}
    foreign = [task for task in pull_tasks(conn, target["id"]) if str(task["data"].get(ID_FIELD)) not in copies]
    if foreign:
        raise InputError(f"{where} and holds {len(foreign)} task(s) that are not copies of project {source['id']}'s "
                         f"tasks (e.g. task {foreign[0]['id']}); choose another --title")
    return target


def _check_budget(parse_budget, budget, size, labeled, project_id, skipped=0):
    try:
        parse_budget(budget, size, already_labeled=labeled)
    except InputError as exc:
        extra = f", {skipped} skipped as unreadable" if skipped else ""
        raise InputError(f"project {project_id} ({size} usable tasks, {labeled} already annotated{extra}): "
                         f"{exc}") from None
