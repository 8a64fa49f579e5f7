"""Embedding image files: cached rows first, the rest through the encoder in batches."""

import logging
import mmap
import os
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ActiveFTError, InputError
from .cache import cache_warning, open_cache
from .encoders import Encoder, load_resolved_encoder
from .heap import large_blocks_stay_in_heap
from .images import ImageDataset, collate_images, decode_side, failure_reason
from .names import DEFAULT_MODEL, resolve_model
from .on_ray import UNFETCHED, fetch_all
from .precision import check_precision, resolve_precision
from ..devices import resolve_device

#: Below this many images to embed, loading runs in the main process (workers cost more than they save).
_MIN_IMAGES_FOR_WORKERS = 64

#: Result matrices above this many bytes (1 GiB: 700,000 × 384 or 210,000 × 1280 rows) are memory-mapped from a
#: temporary file, see :class:`_ResultRows`; smaller ones are plain arrays.
MAPPED_RESULT_BYTES = 1 << 30

#: Rows moved per step when skipped slots are squeezed out of the result (a 25 MB copy at 384-d).
_COMPACT_ROWS = 16384

_log = logging.getLogger(__name__)


@dataclass
class EmbeddingResult:
    """What :func:`embed_images` returns.

    ``features`` (K×dim float32) holds one row per image that could be
    embedded; ``kept`` (K ints, ascending) gives each row's position in the
    input ``paths``; ``skipped`` lists ``(path, reason)`` for the images that
    could not be read, in input order; ``cached`` counts the rows that came
    from the cache; ``model`` and ``weights`` identify the encoder;
    ``precision`` (``"fp32"`` or ``"bf16"``) is the number format every row was
    computed in (cached rows included: the cache keys rows by it) and
    ``layout`` says how the encoder ran (``"bf16, channels_last"``; empty when
    every row came from the cache).
    """

    features: np.ndarray
    kept: np.ndarray
    skipped: list = field(default_factory=list)
    cached: int = 0
    model: str = ""
    weights: str = ""
    precision: str = "fp32"
    layout: str = ""

    @property
    def embedded(self):
        """How many rows were computed in this call (not taken from the cache)."""
        return int(self.features.shape[0]) - int(self.cached)


def _default_workers(n_images):
    if n_images < _MIN_IMAGES_FOR_WORKERS:
        return 0
    return max(0, min(4, os.cpu_count() or 1))


def embed_images(paths, model=DEFAULT_MODEL, pretrained=None, *, batch_size=32, num_workers=None, device="auto",
                 cache_dir=None, progress=True, precision=None, ray_address=None, keys=None, fetch=None):
    """Embed image files; return an :class:`EmbeddingResult`.

    ``paths``: image file paths (str or path-like).  ``model``/``pretrained``:
    see :func:`load_encoder`; ``model`` may also be an already loaded
    :class:`Encoder` (then ``pretrained`` must be None).  ``num_workers``:
    DataLoader workers (default ``min(4, cpu_count)``, 0 below 64 images to
    embed).  ``cache_dir``: folder of the embedding cache (default
    :func:`default_cache_dir`), ``False`` to disable it.  ``progress``: show a
    progress bar on stderr; a callable is called as ``progress(done, total)``
    with the images embedded so far (cached ones not counted).  ``precision``:
    ``"auto"`` (fp32 today), ``"fp32"`` or ``"bf16"`` (bf16 autocast: about
    1.5× as fast where the device computes bf16 natively — CPUs with AVX-512
    BF16 or AMX, CUDA GPUs with bf16 — and refused with the reason elsewhere;
    features within cosine 0.944–1 of fp32, mean 0.996); default ``None``: a
    loaded :class:`Encoder`'s own precision, else ``"auto"``; see
    :mod:`.precision`.  The
    result's ``precision`` says what was used; cached rows are only reused
    when they were computed in the same precision.  ``ray_address``: embed
    on the Ray cluster at this address (``"auto"``, ``HOST:PORT`` or
    ``ray://HOST:PORT``) instead of in this process; the cache is read and
    written here as always, the workers read the image files at the same
    paths (a shared file system), or get them with ``fetch``; see
    :mod:`.on_ray`.

    ``keys``: list of str, one per path (default None: each file's own path,
    size and modification time).  The cache identity of each image instead,
    for images that are no local file or whose file says nothing of where
    its bytes came from (a download).  The same key must always stand for
    the same bytes: nothing checks it, a cached row is reused for its key
    forever.  Keyed rows never meet file rows (a NUL byte, which no path
    holds, starts them), and nothing is looked at before decoding: a missing
    file is reported when it is read.  ``fetch``: with ``ray_address`` and
    ``keys`` only, a picklable callable that the Ray workers call as
    ``fetch(paths[i])``, returning ``(bytes, None)`` or ``(None, reason)``;
    ``paths`` then holds whatever it takes (URLs, say).  The workers fetch
    the images the cache lacks and decode them in memory (an image that does
    not decode is remembered as a file's would be).  A reason is reported as
    a skipped image, and the next run calls ``fetch`` again for that image
    in this process, not in a Ray job of its own: a second run whose other
    images are all cached contacts no worker, and one that comes now goes to
    the workers with the rest.

    JPEGs at least four times the encoder's input side are decoded at a
    reduced scale that keeps twice that side (libjpeg's DCT scaling; see
    :func:`.images.decode_side`): photographs decode several times faster,
    and the features stay within cosine 0.996 of a full decode.

    Process-wide state is left as found: on the CPU, glibc's malloc
    thresholds are raised while the batches run (3× faster, :mod:`.heap`)
    only inside :func:`activeft_label.devices.process_tuning`, which the
    ``activeft`` command line enters for its own process; a script that owns
    its process may enter it too.

    Missing, unreadable, corrupt and truncated images never stop the run:
    they are listed in ``result.skipped`` with a reason.  The encoder is only
    loaded when some image is not in the cache.

    Rows go straight into one preallocated float32 matrix as they come,
    cached ones streamed from SQLite a chunk at a time (no Python object per
    row): an all-cached call of N × C peaks at about 1.2 × the N·C·4 bytes of
    the result.  A result above :data:`MAPPED_RESULT_BYTES` (1 GiB) lives in
    a temporary file mapped shared, in the cache folder (the system's
    temporary folder without a cache), unlinked as soon as it is mapped: its
    pages are file-backed, which the kernel can write back and reclaim under
    memory pressure, and the file goes when the array does.  It needs that
    much free disk; where no folder can take it, the matrix is held in
    memory (with a warning).  ``result.features`` is the matrix itself where
    every image was kept, else its first rows after the skipped slots are
    squeezed out in place.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise InputError("paths must be a list of image paths, not a single path; use list_images(source) first")
    paths = list(paths)
    if not paths:
        raise InputError("no image paths given to embed")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch size must be a positive whole number, got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise InputError(f"num_workers must be a whole number >= 0, got {num_workers!r}")
    if precision is not None:
        check_precision(precision)
    if keys is not None:
        keys = list(keys)
        if len(keys) != len(paths) or not all(isinstance(k, str) and k for k in keys):
            raise InputError(f"keys must hold one non-empty string per path ({len(paths)}), got {len(keys)} items")
    if fetch is not None and (ray_address is None or keys is None or not callable(fetch)):
        raise InputError("fetch must be a callable, and needs ray_address and keys (the workers fetch the images; "
                         "here, fetch them to files first)")
    if ray_address is not None:
        from .on_ray import check_address

        check_address(ray_address)
        if isinstance(model, Encoder):
            raise InputError("ray_address needs the encoder's name (each Ray worker loads its own copy), not a "
                             "loaded Encoder")

    encoder = None
    if isinstance(model, Encoder):
        if pretrained is not None:
            raise InputError("pretrained must be None when model is an already loaded Encoder")
        encoder = model
        name, weights = encoder.name, encoder.weights
        spec = None
        dev = encoder.device
    else:
        spec = resolve_model(model, pretrained)
        name, weights = spec.name, spec.weights
        dev = resolve_device(device)
    # Resolved before the cache is read: its rows are keyed by the precision they were computed in.
    if precision is None:
        precision = encoder.precision if encoder is not None else "auto"
    precision = resolve_precision(precision, dev)

    display = []
    skipped = {}
    # (position, cache key bytes, size, mtime_ns, path for reading or what fetch takes, slot): ``slot`` is the
    # entry's row in the result matrix (its index here; entries are in input order).
    entries = []
    if keys is not None:
        for position, (raw, key) in enumerate(zip(paths, keys)):
            source = os.fsdecode(raw) if isinstance(raw, (bytes, os.PathLike)) else str(raw)
            display.append(source)
            # Size and mtime 0: the key alone is the image's identity.
            entries.append((position, b"\0" + key.encode("utf-8"), 0, 0, source, position))
    for position, raw in enumerate(paths if keys is None else ()):
        try:
            path = os.fspath(raw)
        except TypeError:
            display.append(repr(raw))
            skipped[position] = f"not a path ({type(raw).__name__})"
            continue
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        display.append(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            skipped[position] = "file not found"
            continue
        except OSError as exc:
            skipped[position] = failure_reason(exc)[0]
            continue
        if os.path.isdir(path):
            skipped[position] = "is a folder, not an image file"
            continue
        entries.append((position, os.fsencode(os.path.abspath(path)), st.st_size, st.st_mtime_ns, path,
                        len(entries)))

    cache = open_cache(cache_dir, name, weights, precision) if entries else None
    # Large results are memory-mapped beside the cache (see _ResultRows), else in the system's temporary folder.
    rows = _ResultRows(len(entries), [os.path.dirname(cache.path)] if cache is not None else [])
    failed = {}  # position -> reason remembered from an earlier run
    layout = ""
    try:
        if cache is not None:
            inconsistent = False

            def put_cached(slots, vectors):
                nonlocal inconsistent
                if inconsistent or (rows.dim is not None and vectors.shape[1] != rows.dim):
                    inconsistent = True  # rows of two sizes: nothing more is written, everything is embedded again
                    return
                rows.put(slots, vectors)

            try:
                failed = cache.read_rows(((k[5], k[1], k[2], k[3]) for k in entries), put_cached)
            except sqlite3.Error as exc:
                cache_warning(f"embedding cache {cache.path} cannot be read ({exc}); embedding without it")
                cache.close()
                cache, failed = None, {}
                rows.clear()
            if inconsistent or (encoder is not None and rows.dim not in (None, encoder.dim)):
                rows.clear()  # inconsistent cache rows: embed everything again
        # A vector beats a failure remembered for the same key (in another precision, before it could be fetched).
        failed = {entries[slot][0]: reason for slot, reason in failed.items() if not rows.filled[slot]}
        unfetched = [k for k in entries if failed.get(k[0], "").startswith(UNFETCHED)] if failed else []
        for k in unfetched:
            del failed[k[0]]
        if unfetched and fetch is not None:
            # Images the workers could not fetch last time are asked for again here, one request each, not in a
            # Ray job of their own (most fail again); those that come now go to the workers with the rest.
            for k, (_, reason) in zip(unfetched, fetch_all(fetch, [k[4] for k in unfetched])):
                if reason is not None:
                    failed[k[0]] = reason
        for position, reason in failed.items():
            skipped[position] = reason
        todo = [entries[slot] for slot in np.flatnonzero(~rows.filled).tolist() if entries[slot][0] not in failed]
        cached = rows.count_filled()

        if todo:
            if encoder is None:
                # With Ray the workers run the model; here it only gives the preprocessing and the feature size.
                encoder = load_resolved_encoder(spec, "cpu" if ray_address else dev, precision)
            if rows.dim is not None and rows.dim != encoder.dim:
                rows.clear()
                cached = 0
                todo = [k for k in entries if k[0] not in failed]
            if ray_address is not None:
                _run_on_ray(ray_address, spec, encoder, todo, skipped, cache, rows, batch_size, progress, precision,
                            fetch)
            else:
                _run(encoder, todo, skipped, cache, rows, batch_size, num_workers, progress, precision)
            layout = precision + (", channels_last" if encoder.channels_last else "")
    finally:
        if cache is not None:
            cache.close()

    features, kept = rows.result(encoder.dim if encoder is not None else 0)
    kept = kept.astype(np.int64, copy=False)
    if len(entries) != len(paths):  # else every path has an entry, and slots are positions
        kept = np.fromiter((k[0] for k in entries), dtype=np.int64, count=len(entries))[kept]
    skipped_list = [(display[p], skipped[p]) for p in sorted(skipped)]
    if encoder is not None:
        weights = encoder.weights
    return EmbeddingResult(features=features, kept=kept, skipped=skipped_list, cached=cached, model=name,
                           weights=weights, precision=precision, layout=layout)


class _ResultRows:
    """The result matrix, written row by row as cached and new rows arrive: one row ("slot") per entry.

    ``count`` slots, in input order; ``directories``: where a large matrix may
    be memory-mapped, tried in turn before the system's temporary folder.
    The matrix (``count`` × dim float32) is allocated at the first
    :meth:`put`, whose rows give the dimension; ``filled`` (bool, ``count``)
    says which slots hold a vector.  Above :data:`MAPPED_RESULT_BYTES` it
    lives in a temporary file mapped shared and unlinked at once (see
    :func:`_mapped_matrix`), so its pages are the file's: the kernel writes
    them back and reclaims them under memory pressure, where anonymous pages
    (no swap here) could only stay.
    """

    def __init__(self, count, directories):
        self.count = count
        self.directories = list(directories) + [tempfile.gettempdir()]
        self.matrix = None
        self.mapped = False
        self.filled = np.zeros(count, dtype=bool)

    @property
    def dim(self):
        """The rows' dimension, None until the first :meth:`put`."""
        return None if self.matrix is None else int(self.matrix.shape[1])

    def count_filled(self):
        return int(np.count_nonzero(self.filled))

    def put(self, slots, vectors):
        """Write ``vectors`` (k × dim) into the rows ``slots`` (k ints)."""
        if self.matrix is None:
            self.matrix, self.mapped = _result_matrix(self.count, int(vectors.shape[1]), self.directories)
        elif vectors.shape[1] != self.matrix.shape[1]:
            raise ActiveFTError(f"the encoder gave rows of {vectors.shape[1]} values after rows of "
                                f"{self.matrix.shape[1]}")
        self.matrix[slots] = vectors
        self.filled[slots] = True

    def clear(self):
        """Forget every row (and the matrix: the next :meth:`put` may bring another dimension)."""
        self.matrix = None
        self.filled[:] = False

    def result(self, empty_dim):
        """``(features, kept slots)``: the filled rows, C-contiguous float32 (K × dim), and their slots (K ints).

        Where every slot is filled (the common case) the matrix itself,
        without a copy; otherwise the filled rows are moved up in place,
        chunk by chunk, and the result is the first K rows (the tail of an
        in-memory matrix is given back).  ``empty_dim``: the width of the
        (0 × dim) result where no row is filled.
        """
        kept = np.flatnonzero(self.filled)
        matrix, self.matrix = self.matrix, None
        if matrix is None or kept.size == 0:
            return np.zeros((0, empty_dim), dtype=np.float32), kept
        if kept.size < self.count:
            # Row i comes from slot kept[i] >= i, and each chunk is read (copied) before it is written: the rows a
            # later chunk reads lie beyond every row written so far.
            for start in range(0, kept.size, _COMPACT_ROWS):
                part = kept[start:start + _COMPACT_ROWS]
                matrix[start:start + part.size] = matrix[part]
            if self.mapped:
                matrix = matrix[:kept.size]  # the file's tail stays on disk until the map closes
            else:
                # No view of it exists (the chunks above were copies): realloc gives the tail back.
                matrix.resize((kept.size, matrix.shape[1]), refcheck=False)
        return matrix, kept


def _result_matrix(rows, dim, directories):
    """``(matrix, mapped)``: an uninitialised ``rows`` × ``dim`` float32 matrix, memory-mapped (``mapped`` True)
    above :data:`MAPPED_RESULT_BYTES` where a directory takes the file."""
    if rows * dim * 4 > MAPPED_RESULT_BYTES:
        problems = []
        for directory in directories:
            try:
                return _mapped_matrix(rows, dim, directory), True
            except OSError as exc:
                problems.append(f"{directory}: {exc}")
        _log.warning("the %d × %d embedding matrix (%.1f GiB) cannot be mapped from a temporary file (%s); "
                     "holding it in memory", rows, dim, rows * dim * 4 / 1024**3, "; ".join(problems))
    return np.empty((rows, dim), dtype=np.float32), False


def _mapped_matrix(rows, dim, directory):
    """A ``rows`` × ``dim`` float32 ndarray over a shared map of a temporary file in ``directory``, already unlinked.

    The file's blocks are reserved first (``posix_fallocate``): a full disk is
    an OSError here, not a SIGBUS at the first write into a hole.  The file
    is unlinked right after it is created; Linux keeps it until the map
    closes (when the array and every view of it are gone), so even a killed
    process leaves nothing behind.
    """
    size = rows * dim * 4
    fd, path = tempfile.mkstemp(prefix=".activeft-rows-", suffix=".f32", dir=directory)
    try:
        os.unlink(path)
        os.posix_fallocate(fd, 0, size)
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)  # the map holds its own reference to the file
    return np.frombuffer(mapping, dtype=np.float32).reshape(rows, dim)


class _Progress:
    """Images done: a tqdm bar on stderr (``progress=True``), calls of ``progress(done, total)``, or nothing."""

    def __init__(self, progress, total, description):
        self.call = progress if callable(progress) else None
        self.total, self.done = total, 0
        self.bar = None
        if progress is True:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, count):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        if self.call is not None:
            self.call(self.done, self.total)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _RowSink:
    """Where embedded rows go: the result matrix (:class:`_ResultRows`), the skipped list and the cache (committed
    batch by batch)."""

    def __init__(self, todo, skipped, cache, rows):
        self.by_position = {k[0]: k for k in todo}
        self.skipped = skipped
        self.cache = cache
        self.cache_ok = cache is not None
        self.rows = rows

    def add(self, rows):
        """``rows``: (position, float32 vector or None, failure reason, whether the failure is the file's bytes)."""
        new = []
        slots, vectors = [], []
        for position, vector, reason, content in rows:
            _, key, size, mtime_ns, _, slot = self.by_position[position]
            if vector is None:
                if reason.startswith(UNFETCHED):
                    # Remembered so that the next run asks for it again on the driver (see embed_images).
                    self.skipped[position] = reason[len(UNFETCHED):]
                    new.append((key, size, mtime_ns, reason))
                    continue
                self.skipped[position] = reason
                if content:
                    new.append((key, size, mtime_ns, reason))
                continue
            vector = np.array(vector, dtype=np.float32)
            if not np.all(np.isfinite(vector)):
                self.skipped[position] = "the encoder produced NaN or infinite values"
                continue
            slots.append(slot)
            vectors.append(vector)
            new.append((key, size, mtime_ns, vector))
        if slots:
            self.rows.put(np.asarray(slots, dtype=np.int64), np.stack(vectors))
        if self.cache_ok and new:
            try:
                self.cache.store(new)
            except sqlite3.Error as exc:
                cache_warning(f"embedding cache {self.cache.path} cannot be written ({exc}); continuing without it")
                self.cache_ok = False


def _run(encoder, todo, skipped, cache, rows, batch_size, num_workers, progress, precision):
    """Embed the images in ``todo`` into ``rows``; record failures in ``skipped``; store new rows in ``cache``."""
    if num_workers is None:
        num_workers = _default_workers(len(todo))
    sink = _RowSink(todo, skipped, cache, rows)
    device_type = getattr(encoder.device, "type", "cpu")
    dataset = ImageDataset([k[4] for k in todo], [k[0] for k in todo], encoder.preprocess,
                           min_side=decode_side(encoder.preprocess))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_images,
        pin_memory=(device_type == "cuda"),
    )
    bar = _Progress(progress, len(todo), f"embedding ({encoder.name})")
    # On the CPU, glibc mapped and unmapped each large activation per batch: 3× slower (heap.py). Only
    # within devices.process_tuning (the command line's own process) are its thresholds raised.
    try:
        with large_blocks_stay_in_heap(enabled=device_type == "cpu"):
            for positions, batch, failures in loader:
                rows = [(position, None, reason, content) for position, (reason, content) in failures]
                if batch is not None:
                    vectors = encoder.encode(batch, precision).numpy()
                    if vectors.ndim != 2 or vectors.shape[0] != len(positions):
                        raise ActiveFTError(
                            f"encoder {encoder.name} returned shape {tuple(vectors.shape)} for a batch of "
                            f"{len(positions)} images"
                        )
                    encoder.dim = int(vectors.shape[1])  # what the model really gives
                    rows += [(position, vector, "", False) for position, vector in zip(positions, vectors)]
                sink.add(rows)
                bar.update(len(positions) + len(failures))
    finally:
        bar.close()


def _run_on_ray(address, spec, encoder, todo, skipped, cache, rows, batch_size, progress, precision, fetch=None):
    """The same as :func:`_run`, on a Ray cluster (see :mod:`.on_ray`)."""
    from .on_ray import embed_on_ray

    sink = _RowSink(todo, skipped, cache, rows)
    bar = _Progress(progress, len(todo), f"embedding on Ray ({spec.name})")
    try:
        embed_on_ray(address, spec, encoder.preprocess, decode_side(encoder.preprocess),
                     [(k[0], k[4]) for k in todo], precision=precision, batch_size=batch_size,
                     on_rows=lambda rows: (sink.add(rows), bar.update(len(rows))), fetch=fetch)
    finally:
        bar.close()
