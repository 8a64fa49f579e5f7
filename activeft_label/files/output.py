"""Writing selections to disk: CSV or JSON, atomically (nothing half-written on failure)."""

import csv
import io
import json
import os
import secrets
import stat
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
    """Write ``data`` to a temp file beside ``path`` and rename it into place.

    ``data`` is a str (bytes with ``mode="wb"``), or a callable given the open file to write into, for output
    too large to build in memory first (a features file of millions of rows).

    A new file gets the permissions any new file gets (0o666 less the umask); a file that is replaced keeps its
    permission bits.
    """
    path = Path(path)
    fd, tmp = _new_file_beside(path)
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as handle:
            try:
                replaced = os.stat(path)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISREG(replaced.st_mode):
                    os.chmod(tmp, stat.S_IMODE(replaced.st_mode))
            if callable(data):
                data(handle)
            else:
                handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_file_beside(path):
    """Create an empty, uniquely named hidden file in ``path``'s folder; returns (fd, name).

    Not ``tempfile.mkstemp``: it creates files 0o600, which the rename would hand on to the output.  Opening with
    0o666 lets the kernel apply the umask (and a folder's default ACL) as for any new file, without reading or
    changing the process-wide umask.
    """
    folder = path.parent if str(path.parent) else Path(".")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


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
