"""The sync record: what a push wrote, kept in ``dataset.info["activeft_labelstudio"]``.

Per Label Studio project: the server URL, the title, the task field, the
document root and the rounds (run name, count, rank offset of each).
"""

from ..errors import InputError

#: Sample field that holds each pushed sample's Label Studio task id.
TASK_FIELD = "activeft_ls_task"
#: Key of the sync record in ``dataset.info``.
STATE_KEY = "activeft_labelstudio"


def round_run_name(run_name, round_number):
    """Name of the FiftyOne selection run of a round: ``run_name`` for round 1, ``run_name_roundK`` after."""
    return run_name if int(round_number) == 1 else f"{run_name}_round{int(round_number)}"


def all_records(dataset):
    """Every project's record on ``dataset``, keyed by project id (a copy: change it, then :func:`save_record`)."""
    return dict(dataset.info.get(STATE_KEY) or {})


def save_record(dataset, project_key, record):
    """Store ``record`` as the record of project ``project_key`` and save the dataset."""
    records = all_records(dataset)
    records[project_key] = record
    dataset.info[STATE_KEY] = records
    dataset.save()


def project_record(dataset, project_id):
    """The record of one project, or None when nothing was pushed to it."""
    return all_records(dataset).get(str(int(project_id)))


def check_task_field(dataset, task_field, project_id):
    """InputError unless ``task_field`` can hold the task ids of ``project_id`` (no other project's, an IntField)."""
    import fiftyone as fo

    for key, record in all_records(dataset).items():
        if record.get("task_field") == task_field and key != str(int(project_id)):
            raise InputError(f"field {task_field!r} of dataset {dataset.name!r} already holds the tasks of Label "
                             f"Studio project {key}; pass another --task-field for project {project_id}")
    schema = dataset.get_field_schema()
    if task_field in schema and not isinstance(schema[task_field], fo.IntField):
        raise InputError(f"field {task_field!r} of dataset {dataset.name!r} is a {type(schema[task_field]).__name__}, "
                         f"not the integer task-id field activeft writes; pass another --task-field")
