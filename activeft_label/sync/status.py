"""sync status: selected / pushed / annotated / pulled samples per round of a project."""

from ..connectors import fiftyone as fo_connector
from ..connectors import labelstudio as ls_connector
from ..errors import InputError
from .records import TASK_FIELD, project_record
from .results import StatusRow, StatusRows


def status(collection, conn, project_id, *, label_field=None, task_field=None):
    """Selected / pushed / annotated / pulled samples per round of a project.

    ``label_field`` defaults to the field of the last :func:`pull` from this
    project; ``task_field`` to the one :func:`push` used.  Returns a
    :class:`StatusRows` (a list of :class:`StatusRow`, the last one the
    total) whose ``duplicate_ranks`` lists the priority ranks that more than
    one task of the project holds (a queue left broken by an earlier version;
    ``activeft sync push --repair`` mends it).
    """
    dataset = fo_connector.root_dataset(collection)
    project = ls_connector.get_project(conn, project_id)
    record = project_record(dataset, project["id"])
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
    rows = StatusRows(duplicate_ranks=duplicate_ranks(tasks))
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


def duplicate_ranks(tasks):
    """{rank: [task ids]} of the priority ranks that several of ``tasks`` hold (task dicts with ``data``)."""
    holders = {}
    for task in tasks:
        rank = (task.get("data") or {}).get(ls_connector.RANK_FIELD)
        if rank is not None:
            holders.setdefault(int(rank), []).append(int(task["id"]))
    return {rank: sorted(ids) for rank, ids in sorted(holders.items()) if len(ids) > 1}
