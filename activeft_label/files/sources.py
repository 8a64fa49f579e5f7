"""Where the items to select from come from: image files or precomputed features.

* :func:`list_images` turns a folder (searched recursively) or a text file with
  one image path per line into a sorted list of absolute image paths.
* :func:`load_features` reads a ``.npy`` matrix or an ``.npz`` archive with a
  ``features`` array and optional ``ids``.

Everything the user can get wrong raises :class:`~activeft_label.errors.InputError`
with a message that says what was expected.
"""

import contextlib
import os

import numpy as np

from ..errors import InputError

#: File name endings (compared case-insensitively) that count as images in a folder.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

#: File name endings of precomputed feature files.
FEATURES_EXTENSIONS = {".npy", ".npz"}

__all__ = ["IMAGE_EXTENSIONS", "FEATURES_EXTENSIONS", "list_images", "load_features", "is_features_file"]


def _suffix(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def is_features_file(path):
    """True when ``path`` names a feature file (``.npy`` or ``.npz``, any case)."""
    try:
        return _suffix(path) in FEATURES_EXTENSIONS
    except TypeError:
        return False


def _is_image_name(name):
    return _suffix(name) in IMAGE_EXTENSIONS


def _extensions_text():
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def list_images(source, skipped=None):
    """Return the image paths named by ``source`` as a list of absolute paths.

    ``source`` is one of:

    * a folder: every file under it (recursively) whose name ends in one of
      :data:`IMAGE_EXTENSIONS` (any case), sorted by path; hidden files and
      folders (names starting with ``.``) are skipped, and symbolic links to
      folders are followed once (loops are ignored);
    * a text file with one image path per line: blank lines and lines starting
      with ``#`` are ignored, relative paths are taken relative to the list
      file's folder, ``~`` is expanded; the order of the file is kept and a
      path listed twice is kept once.  Paths are not checked here: missing or
      unreadable files are reported when they are embedded;
    * a single image file (its name ends in an image extension): a list with it.

    A subfolder that cannot be listed (no permission, a path too long, ...)
    is left out; pass a list as ``skipped`` to have ``(folder, reason)``
    appended to it for each one, as :func:`~activeft_label.files.pool.load_pool`
    does to report them with the unreadable images.

    Raises :class:`InputError` when ``source`` does not exist, is a feature
    file, is not readable text, names no images, or is a folder that cannot
    be listed.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise InputError("no image source given; pass a folder of images or a text file listing image paths")
    try:
        source = os.fspath(source)
    except TypeError:
        raise InputError(f"image source must be a path, got {type(source).__name__}") from None
    source = os.path.expanduser(source)
    if not os.path.exists(source):
        raise InputError(f"{source} does not exist; pass a folder of images or a text file listing image paths")
    if os.path.isdir(source):
        return _list_folder(source, skipped if skipped is not None else [])
    if is_features_file(source):
        raise InputError(f"{source} is a feature file, not images; load it with load_features (or pass it as features)")
    if _is_image_name(source):
        return [os.path.abspath(source)]
    return _read_list_file(source)


def _list_folder(folder, skipped):
    root = os.path.abspath(folder)
    found = []
    seen_dirs = set()
    unreadable = []

    def cannot_list(exc):
        unreadable.append((exc.filename or root, exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=cannot_list):
        try:
            real = os.path.realpath(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if real in seen_dirs:  # a link loop or a folder reached twice through links
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not _is_image_name(name):
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found.append(path)
    if unreadable and unreadable[0][0] == root:
        raise InputError(f"cannot list folder {root} ({unreadable[0][1]}); check its permissions, or pass another "
                         f"folder")
    unreadable = [(path, f"folder cannot be listed ({reason})") for path, reason in unreadable]
    if not found:
        more = (f"; {len(unreadable)} subfolder(s) could not be listed, first: {unreadable[0][0]}: "
                f"{unreadable[0][1]}" if unreadable else "")
        raise InputError(
            f"no images found in folder {root} (looked recursively for files ending in {_extensions_text()}, "
            f"any case, skipping hidden files and folders){more}"
        )
    found.sort()
    skipped.extend(sorted(unreadable))
    return found


def _read_list_file(list_file):
    list_file = os.path.abspath(list_file)
    base = os.path.dirname(list_file)
    try:
        with open(list_file, "r", encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise InputError(
            f"{list_file} is not a UTF-8 text file; pass a folder of images or a text file with one image path "
            f"per line"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read image list {list_file}: {exc.strerror or exc}") from None
    paths = []
    seen = set()
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry = os.path.expanduser(entry)
        if not os.path.isabs(entry):
            entry = os.path.join(base, entry)
        entry = os.path.normpath(entry)
        if entry not in seen:
            seen.add(entry)
            paths.append(entry)
    if not paths:
        raise InputError(
            f"image list {list_file} names no image paths (expected one path per line; blank lines and lines "
            f"starting with # are ignored)"
        )
    return paths


def load_features(path):
    """Read precomputed features; return ``(features, ids)``.

    * ``.npy``: a 2-D array (items × dimensions); ``ids`` are the row numbers
      as strings (``"0"``, ``"1"``, ...).
    * ``.npz``: the array ``features`` (required, 2-D) and optionally ``ids``
      (1-D, one per row, made into strings, no duplicates); other arrays are
      ignored.

    ``features`` comes back memory-mapped where the file allows it (a
    ``.npy``, or an ``.npz`` written by ``np.savez``, which stores its arrays
    uncompressed): a pool of 10M × 384 is then read from disk as the
    selection goes through it instead of being loaded whole.  float32 and
    float16 arrays keep their dtype (:func:`activeft_label.select` stores a
    float16 pool in float16); any other numeric dtype, and a compressed
    ``.npz`` member, is read into memory as float32.  NaN or all-zero
    rows are not checked here (selection does that).  Raises
    :class:`InputError` for a missing or unreadable file, a wrong suffix, a
    missing ``features`` array, a wrong number of dimensions, non-numeric
    values, or ``ids`` that do not match the rows.
    """
    try:
        path = os.path.expanduser(os.fspath(path))
    except TypeError:
        raise InputError(f"features path must be a path, got {type(path).__name__}") from None
    suffix = _suffix(path)
    if suffix not in FEATURES_EXTENSIONS:
        raise InputError(f"{path} is not a feature file; expected a .npy or .npz file")
    if not os.path.exists(path):
        raise InputError(f"features file {path} does not exist")
    if os.path.isdir(path):
        raise InputError(f"features file {path} is a folder; expected a .npy or .npz file")

    ids = None
    invalid = (f"cannot read features from {path}: it is not a valid features file; expected a 2-D array of "
               f"numbers saved with np.save(path, X), or an .npz saved with np.savez(path, features=X, ids=IDS)")
    with numpy_read_errors(lambda reason: f"cannot read features from {path}: {reason}", invalid):
        if suffix == ".npy":
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                if "pickle" not in str(exc) and "object" not in str(exc).lower():
                    raise
                array = np.load(path, allow_pickle=False)   # raises the usual "holds Python objects" error
            if not isinstance(array, np.ndarray):
                raise InputError(f"{path} does not hold a single array; expected a 2-D .npy array")
        else:
            with np.load(path, allow_pickle=False) as archive:
                if not hasattr(archive, "files"):
                    raise InputError(f"{path} is not an .npz archive")
                names = list(archive.files)
                if "features" not in names:
                    found = ", ".join(repr(n) for n in names) if names else "none"
                    raise InputError(
                        f"{path} has no array named 'features' (arrays found: {found}); save it with "
                        f"np.savez(path, features=X, ids=IDS)"
                    )
                array = _stored_member(path, "features")
                if array is None:
                    array = archive["features"]
                if "ids" in names:
                    ids = archive["ids"]

    features = _as_matrix(array, path)
    n = features.shape[0]
    if ids is None:
        id_list = [str(i) for i in range(n)]
    else:
        id_list = _as_ids(ids, n, path)
    return features, id_list


@contextlib.contextmanager
def numpy_read_errors(message, invalid=None):
    """Turn what ``np.load`` (and reading an ``.npz``'s arrays) raises into :class:`InputError`.

    ``message(reason)`` words the error; ``invalid``, if given, is the whole message for a file that is no NumPy
    file or holds Python objects.  An :class:`InputError` raised inside passes through unchanged.
    """
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            # NumPy's own message advises loading with allow_pickle, which runs code from the file: never give
            # that advice about a file of unknown origin.
            raise InputError(invalid or message("not a NumPy file of plain numbers or strings (files holding Python "
                                                "objects are never loaded)")) from None
        raise InputError(message(f"{exc} (object arrays are not loaded)")) from None
    except (OSError, EOFError) as exc:
        raise InputError(message(str(exc))) from None
    except Exception as exc:  # zipfile.BadZipFile, corrupt headers, ...
        raise InputError(message(f"{type(exc).__name__}: {exc}")) from None


def _stored_member(path, name):
    """Array ``name`` of an ``.npz`` memory-mapped in place, or None where it cannot be (compressed, or objects).

    ``np.savez`` stores each array as an uncompressed ``name.npy`` member: its bytes lie in the archive as they
    would in a ``.npy`` file, after the member's local header, so they can be mapped like one.
    """
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(name + ".npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
            return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return None
        offset = handle.tell()
    if dtype.hasobject or len(shape) != 2 or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)


def _as_matrix(array, path):
    if array.ndim != 2:
        raise InputError(
            f"features in {path} must be a 2-D array (items × dimensions), got shape {tuple(array.shape)}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"features in {path} must be numbers, got an array of {array.dtype}")
    if np.iscomplexobj(array):
        raise InputError(f"features in {path} are complex numbers; expected real numbers")
    if array.dtype in (np.float32, np.float16) and array.flags.c_contiguous:
        return array          # memory-mapped, as stored: selection reads it in chunks of rows
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_ids(ids, n, path):
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise InputError(f"ids in {path} must be a 1-D array (one per feature row), got shape {tuple(ids.shape)}")
    if ids.shape[0] != n:
        raise InputError(f"ids in {path} has {ids.shape[0]} entries but features has {n} rows; they must match")
    out = []
    for value in ids.tolist():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out.append(str(value))
    if len(set(out)) != len(out):
        seen = set()
        duplicate = next(v for v in out if v in seen or seen.add(v))
        raise InputError(f"ids in {path} are not unique (for example {duplicate!r} appears more than once)")
    return out
