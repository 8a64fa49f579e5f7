"""sync pull: the finished annotations of a project, written to a label field by sample id."""

import time

from ..connectors import fiftyone as fo_connector
from ..connectors import labelstudio as ls_connector
from ..errors import InputError
from .records import TASK_FIELD, project_record, save_record
from .results import PullResult


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


def pull(collection, conn, project_id, label_field, *, overwrite=False, control=None, task_field=None,
         progress=None):
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
    progress : callable, optional
        Told ``(fraction, message)``: tasks read / total, then the labels written.

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
    record = project_record(dataset, project["id"])
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

    report = progress if callable(progress) else (lambda fraction, message: None)
    report(0.0, f"reading the annotations of project {project['id']}")
    tasks = ls_connector.export_tasks(conn, project["id"], progress=lambda f, m: report(0.9 * f, m))
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

    report(0.9, f"writing {len(labels)} labels to {label_field!r}")
    written = fo_connector.write_labels(dataset, label_field, labels, overwrite=overwrite)
    result.written, result.unchanged, result.conflicts = written.written, written.unchanged, written.conflicts
    result.missing_samples.extend(written.missing)  # deleted between the two reads

    record = project_record(dataset, project["id"])       # read again: keep what a push meanwhile recorded
    if record is not None and task_field in dataset.get_field_schema():
        alive = {int(task["id"]) for task in tasks}
        ids, stored = collection.exists(task_field).values(["id", task_field])
        result.deleted_tasks = [sid for sid, tid in zip(ids, stored) if int(tid) not in alive]
        record = dict(record)
        record["label_field"] = label_field
        save_record(dataset, str(int(project["id"])), record)
    result.elapsed = time.perf_counter() - started
    report(1.0, f"{len(result.written)} labels written to {label_field!r}")
    return result
