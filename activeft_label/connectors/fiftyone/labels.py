"""Writing labels from an annotation tool into a label field."""

from dataclasses import dataclass, field

import fiftyone as fo

from ...errors import InputError
from .checks import check_identifier
from .defaults import RESERVED_FIELDS
from .target import root_dataset


@dataclass
class LabelWriteReport:
    """What :func:`write_labels` did: sample ids ``written``, ``unchanged``, ``conflicts`` (kept as they were:
    another label is there and ``overwrite`` was off) and ``missing`` (no such sample in the dataset)."""

    written: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    missing: list = field(default_factory=list)


def _label_content(label):
    """A label as a plain dict without its (random) ids, for comparing contents."""
    if label is None:
        return None

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("_id", "id")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(label.to_dict())


def check_label_field(collection, field_name, label_type, reserved=()):
    """InputError unless ``field_name`` can hold labels of ``label_type`` (absent, or a field of that type)."""
    dataset = root_dataset(collection)
    message = check_identifier("label field", field_name, "--label-field")
    if message:
        raise InputError(message)
    if "." in field_name or field_name.startswith("_"):
        raise InputError(f"--label-field {field_name!r} must be a top-level field name (no dots, no leading "
                         f"underscore)")
    if field_name in RESERVED_FIELDS or field_name in reserved:
        raise InputError(f"--label-field {field_name!r} is a field FiftyOne or activeft manages; choose another name")
    schema = dataset.get_field_schema()
    if field_name not in schema:
        return
    existing = schema[field_name]
    document_type = getattr(existing, "document_type", None)
    if not isinstance(existing, fo.EmbeddedDocumentField) or document_type is not label_type:
        what = document_type.__name__ if document_type is not None else type(existing).__name__
        raise InputError(f"field {field_name!r} of dataset {dataset.name!r} holds {what}, not "
                         f"{label_type.__name__}; choose another --label-field")


def write_labels(collection, field_name, labels, *, overwrite=False):
    """Write labels to samples by sample id, never replacing a different label unless ``overwrite``.

    Parameters
    ----------
    collection : Dataset or DatasetView
    field_name : str
        The label field (created when absent; an existing one must hold the
        same label type, see :func:`check_label_field`).
    labels : dict {sample id: fo.Label}
        All of one label type.
    overwrite : bool, default=False
        Replace labels that differ from the new ones.  Without it such
        samples are left as they are and listed in ``conflicts``.

    Returns
    -------
    LabelWriteReport
        A label equal in content to the one already there counts as
        ``unchanged`` and is not written again.
    """
    dataset = root_dataset(collection)
    report = LabelWriteReport()
    if not labels:
        return report
    types = {type(label) for label in labels.values()}
    if len(types) != 1:
        raise InputError(f"labels of several types ({', '.join(sorted(t.__name__ for t in types))}) for one field")
    check_label_field(dataset, field_name, types.pop())
    wanted = list(labels)
    present = dataset.select(wanted)
    has_field = field_name in dataset.get_field_schema()
    if has_field:
        ids, current = present.values(["id", field_name])
    else:
        ids, current = present.values("id"), None
    found = set(ids)
    report.missing = [sid for sid in wanted if sid not in found]
    existing = dict(zip(ids, current)) if has_field else {}
    write = {}
    for sid in ids:
        new, old = labels[sid], existing.get(sid)
        if old is not None and _label_content(old) == _label_content(new):
            report.unchanged.append(sid)
        elif old is not None and not overwrite:
            report.conflicts.append(sid)
        else:
            write[sid] = new
    if write:
        dataset.set_values(field_name, write, key_field="id")
    report.written = list(write)
    return report
