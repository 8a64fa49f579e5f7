"""Reading the annotations of a project back as labels."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ...errors import ActiveFTError, InputError
from ._http import request_json
from .fields import ID_FIELD

#: Control tags whose results :func:`read_annotations` understands, and the kind of label each gives.
SUPPORTED_CONTROLS = {"Choices": "classification", "RectangleLabels": "detection"}


def label_controls(config):
    """The Choices / RectangleLabels controls of a label config.

    Returns a list of ``{"name", "tag", "kind", "labels", "multiple"}``
    (``kind``: ``"classification"`` or ``"detection"``; ``multiple``: a
    Choices control with ``choice="multiple"``).
    """
    try:
        root = ET.fromstring(config or "<View/>")
    except ET.ParseError as exc:
        raise InputError(f"the project's label config is not valid XML ({exc})") from None
    controls = []
    for element in root.iter():
        if element.tag in SUPPORTED_CONTROLS and element.get("name"):
            item = "Choice" if element.tag == "Choices" else "Label"
            controls.append({"name": element.get("name"), "tag": element.tag, "kind": SUPPORTED_CONTROLS[element.tag],
                             "labels": [child.get("value") for child in element.iter(item) if child.get("value")],
                             "multiple": element.get("choice") == "multiple"})
    return controls


@dataclass
class TaskAnnotation:
    """The annotation of one task that counts, in tool-neutral form.

    Attributes
    ----------
    task_id : int
    stable_id : str or None
        The task's ``activeft_id`` (None for tasks activeft did not write).
    annotation_id : int or None
        The annotation chosen (None when every annotation was cancelled).
    updated_at : str or None
    annotations : int
        Annotations of the task that were not cancelled.
    cancelled : int
        Cancelled ("skipped") annotations of the task.
    choices : list of str
        Choices of the control (classification).
    boxes : list of (label, x, y, width, height)
        Rectangles, relative to the image (0..1, top-left corner), converted
        from Label Studio's percentages.
    problems : list of str
        Results that could not be converted (rotated boxes, unknown labels).
    """

    task_id: int
    stable_id: str = None
    annotation_id: int = None
    updated_at: str = None
    annotations: int = 0
    cancelled: int = 0
    choices: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    problems: list = field(default_factory=list)


#: Tasks per page when :func:`export_tasks` reads a project.  Each page costs the server a fixed amount (it counts
#: the project's tasks, annotations and predictions for every page): on 10,000 annotated tasks (label-studio 1.23.2)
#: pages of 100 and 250 were slower, pages of 500, 1,000 and 2,000 about equal (12-14 s, like the one-request
#: export) on this 2-core machine.
ANNOTATION_PAGE_SIZE = 1000
#: The fields :func:`export_tasks` asks for (Label Studio's ``include``, which also trims each annotation).
EXPORT_FIELDS = ("id", "data", "annotations", "result", "was_cancelled", "created_at", "updated_at")


def export_tasks(conn, project_id, *, page_size=ANNOTATION_PAGE_SIZE, via="tasks", progress=None):
    """Every task of a project with its annotations.

    Returns a list of dicts, one per task: ``id``, ``data`` (as stored) and
    ``annotations`` (a list of dicts with ``id``, ``result``,
    ``was_cancelled``, ``created_at``, ``updated_at``), in task id order.

    Read from the task list, ``GET /api/tasks/?project=ID&fields=all``, page
    by page (``page_size`` tasks a request), with ``include`` naming only the
    fields above: the supported way, in every edition (it needs only the
    right to view tasks).  ``via="export"`` reads Label Studio's one-request
    JSON export instead (``GET /api/projects/ID/export``), which label-studio
    1.23 marks deprecated and Label Studio Enterprise answers with 404; it is
    kept for comparison (``bench/sync_roundtrip.py --compare export``) and
    returns the export's full task dicts.  ``progress``, a callable, is told
    ``(fraction, message)`` after each page.
    """
    if via == "export":
        answer = request_json(conn, "GET", f"/api/projects/{int(project_id)}/export",
                              f"export the annotations of project {project_id}",
                              params={"exportType": "JSON", "download_all_tasks": "true"})
        if not isinstance(answer, list):
            raise ActiveFTError(f"unexpected export from {conn.url} for project {project_id}: not a list of tasks")
        return answer
    if via != "tasks":
        raise InputError(f"via must be 'tasks' or 'export', got {via!r}")
    if int(page_size) < 1:
        raise InputError(f"page size must be at least 1, got {page_size}")
    what = f"read the annotations of project {project_id}"
    params = {"project": int(project_id), "fields": "all", "include": ",".join(EXPORT_FIELDS),
              "resolve_uri": "false", "page_size": int(page_size)}
    tasks, seen, page = [], set(), 1
    while True:
        try:
            answer = request_json(conn, "GET", "/api/tasks/", what, params={**params, "page": page},
                                  not_found="past the last page")
        except InputError as exc:
            if str(exc) == "past the last page" and page > 1:  # tasks were deleted while reading
                break
            raise
        batch = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(batch, list):
            raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: no list of tasks; is it "
                                f"Label Studio 1.13 or later?")
        for task in batch:
            if "annotations" not in task or any("result" not in a for a in task["annotations"] or ()):
                raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: tasks without "
                                    f"their annotations; is it Label Studio 1.13 or later?")
            if int(task["id"]) not in seen:  # a task imported while reading may shift the pages
                seen.add(int(task["id"]))
                tasks.append({"id": int(task["id"]), "data": task.get("data") or {},
                              "annotations": list(task["annotations"] or [])})
        total = int(answer.get("total") or 0)
        if progress is not None and total:
            progress(min(1.0, len(tasks) / total), f"read {len(tasks)} of {total} tasks with their annotations")
        if not batch or page * int(page_size) >= total:
            break
        page += 1
    tasks.sort(key=lambda task: task["id"])
    return tasks


def _latest(annotations):
    """The annotation that counts: the latest non-cancelled one (last updated, then highest id)."""
    live = [a for a in annotations if not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0)))


def read_annotations(conn, project_id, control, tasks=None):
    """The annotation that counts of every annotated task, converted for ``control``.

    Parameters
    ----------
    conn : Connection
    project_id : int
    control : dict
        One entry of :func:`label_controls` (its ``name`` selects the results read).
    tasks : list of dict, optional
        What :func:`export_tasks` returned, when the caller has it already.

    Returns
    -------
    list of TaskAnnotation
        One per task that has at least one annotation, cancelled ones
        included (``annotation_id`` None).  Of several annotations of a task,
        the latest non-cancelled one counts (by ``updated_at``, then id);
        cancelled annotations ("skip") never count.
    """
    out = []
    known = set(control.get("labels") or ())
    for task in export_tasks(conn, project_id) if tasks is None else tasks:
        annotations = task.get("annotations") or []
        if not annotations:
            continue
        data = task.get("data") or {}
        stable = data.get(ID_FIELD)
        chosen = _latest(annotations)
        record = TaskAnnotation(task_id=int(task["id"]), stable_id=None if stable in (None, "") else str(stable),
                                annotations=sum(1 for a in annotations if not a.get("was_cancelled")),
                                cancelled=sum(1 for a in annotations if a.get("was_cancelled")))
        if chosen is not None:
            record.annotation_id = int(chosen["id"])
            record.updated_at = chosen.get("updated_at") or chosen.get("created_at")
            for result in chosen.get("result") or []:
                if result.get("from_name") != control["name"]:
                    continue
                _convert(result, control, known, record)
        out.append(record)
    return out


def _convert(result, control, known, record):
    value = result.get("value") or {}
    if control["tag"] == "Choices":
        for choice in value.get("choices") or []:
            if known and choice not in known:
                record.problems.append(f"choice {choice!r} is not in the label config")
            record.choices.append(str(choice))
        return
    labels = value.get("rectanglelabels") or []
    try:
        x, y, w, h = (float(value[k]) / 100.0 for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        record.problems.append("a rectangle without x/y/width/height")
        return
    if abs(float(value.get("rotation") or 0.0)) > 1e-6:
        # FiftyOne boxes are axis-aligned; an enclosing box would silently grow the object.
        record.problems.append(f"a rectangle rotated by {value.get('rotation')} degrees (left out)")
        return
    for label in labels or [None]:
        record.boxes.append((label, x, y, w, h))
