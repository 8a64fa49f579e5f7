"""Writing selections to disk: CSV or JSON, atomically (nothing half-written on failure)."""

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from ..errors import InputError

COLUMNS = ("rank", "index", "id", "path", "cluster_size")
OUTPUT_SUFFIXES = (".csv", ".json")


def check_output_path(path, suffixes=OUTPUT_SUFFIXES, what="--out"):
    """Fail early, before any work, if ``path`` cannot be written later."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {str(path)!r} must end in {' or '.join(suffixes)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what}: folder {str(parent)!r} is not writable")
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder; give a file name")
    return path


def write_atomic(path, data, mode="w"):
    """Write ``data`` to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent or "."))
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_selection(path, records):
    """Write selection records (dicts with :data:`COLUMNS`) as CSV or JSON by suffix."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_atomic(path, json.dumps([{k: r[k] for k in COLUMNS} for r in records], indent=2) + "\n")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_atomic(path, buffer.getvalue())
