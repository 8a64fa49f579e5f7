"""The on-disk embedding cache: one SQLite row per image, keyed by model, weights, precision, path, size and mtime."""

import itertools
import logging
import os
import sqlite3

import numpy as np

from .precision import PRECISIONS

#: Name of the cache table; bump the suffix when preprocessing changes so old rows are not reused
#: (v2: large JPEGs are decoded at a reduced scale, images.decode_side; v3: rows keyed by precision too).
_CACHE_TABLE = "embeddings_v3"
#: The table before v3: the same preprocessing, every row computed in fp32, so its rows move over.
_FP32_TABLE = "embeddings_v2"
_CACHE_FILE = "embeddings.sqlite3"
#: The precisions rows are stored in (what ``resolve_precision`` gives): a lookup names each, see ``read_rows``.
STORED_PRECISIONS = tuple(p for p in PRECISIONS if p != "auto")
#: Keys looked up per query by :meth:`_Cache.read_rows`: one chunk's rows are held at a time (25 MB at 384-d).
LOOKUP_CHUNK = 16384

_log = logging.getLogger(__name__)


def default_cache_dir():
    """``$ACTIVEFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/activeft-label``, else ``~/.cache/activeft-label``."""
    env = os.environ.get("ACTIVEFT_CACHE_DIR")
    if env:
        return os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "activeft-label")


class _Cache:
    def __init__(self, directory, model, weights, precision="fp32"):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, _CACHE_FILE)
        self.model = model
        self.weights = weights
        self.precision = precision
        self.con = sqlite3.connect(self.path, timeout=60)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {_CACHE_TABLE} ("
            "model TEXT NOT NULL, weights TEXT NOT NULL, precision TEXT NOT NULL, path BLOB NOT NULL, "
            "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
            "PRIMARY KEY (model, weights, precision, path))"
        )
        self.con.commit()
        moved = self._keep_fp32_rows()
        self._drop_superseded_tables(vacuum=moved)

    def _keep_fp32_rows(self):
        # A cache written before rows were keyed by precision holds fp32 features of today's preprocessing:
        # move them over once instead of embedding the pool again.
        if not self.con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (_FP32_TABLE,)).fetchone():
            return False
        try:
            with self.con:
                self.con.execute(
                    f"INSERT OR IGNORE INTO {_CACHE_TABLE} (model, weights, precision, path, size, mtime_ns, dim, "
                    f"vector) SELECT model, weights, 'fp32', path, size, mtime_ns, dim, vector FROM {_FP32_TABLE}")
                self.con.execute(f"DROP TABLE {_FP32_TABLE}")
        except sqlite3.OperationalError:  # another process moved them first
            return False
        return True

    def _drop_superseded_tables(self, vacuum=False):
        # Rows of an older table can never be read again (their preprocessing differs), and a pool's worth of
        # them is hundreds of MB: drop them once and give the space back to the file system.
        old = [name for (name,) in self.con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'embeddings_v[0-9]*' AND name != ?",
            (_CACHE_TABLE,))]
        if not old and not vacuum:
            return
        for name in old:
            self.con.execute(f'DROP TABLE IF EXISTS "{name}"')
        self.con.commit()
        try:
            self.con.execute("VACUUM")
        except sqlite3.OperationalError:  # another process has the file open in a transaction: space is reused
            pass

    def lookup(self, keys):
        """``keys``: list of (position, path_bytes, size, mtime_ns).

        Returns ``({position: float32 vector}, {position: reason})``: the
        vectors computed by this model and weights in this precision, and the
        files remembered as undecodable (whatever the precision: decoding does
        not depend on it).  One Python object per row: for a few keys; a pool
        goes through :meth:`read_rows`.
        """
        found = {}

        def put(positions, vectors):
            found.update(zip(positions.tolist(), vectors))

        failed = self.read_rows(keys, put)
        return found, failed

    def read_rows(self, keys, put, chunk=None):
        """Stream the cached rows of ``keys`` to ``put``, ``chunk`` keys per query; return the remembered failures.

        ``keys``: iterable of (slot, path_bytes, size, mtime_ns), ``slot`` a
        whole number >= 0 that names the key in what comes back (each slot
        once).  ``put(slots, vectors)`` is called once per chunk and dimension
        found, with ``slots`` int64 (k,) ascending and ``vectors`` float32
        (k × dim), the rows of this model and weights in this precision (a
        view of the chunk's bytes: ``put`` copies what it keeps).
        Returns ``{slot: reason}`` for the files remembered as undecodable,
        whatever the precision they were met in (decoding does not depend on
        it); a slot may have both a vector and a failure.  Only one chunk's
        rows are held at a time, and the read transaction ends after each
        chunk, so writers in other processes are not held up by a whole pool.
        ``chunk`` defaults to :data:`LOOKUP_CHUNK` (16,384).
        """
        chunk = LOOKUP_CHUNK if chunk is None else chunk
        con = self.con
        con.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (pos INTEGER PRIMARY KEY, path BLOB, size INTEGER, "
                    "mtime_ns INTEGER)")
        con.execute("DELETE FROM wanted")
        # Every precision named, so that the primary key finds each row (a failure remembered in another
        # precision included): with "precision = ? OR dim = 0" alone SQLite scanned all of the model's rows for
        # each key (20,000 keys: 14 s, quadratic).  A failure stored in a precision this release does not know
        # is not seen: that file is tried again, and fails again.
        precisions = sorted(set(STORED_PRECISIONS) | {self.precision})
        query = (f"SELECT w.pos, e.dim, e.vector FROM wanted AS w CROSS JOIN {_CACHE_TABLE} AS e "
                 f"ON e.model = ? AND e.weights = ? AND e.precision IN ({', '.join('?' * len(precisions))}) "
                 "AND e.path = w.path AND e.size = w.size AND e.mtime_ns = w.mtime_ns "
                 "AND (e.precision = ? OR e.dim = 0) ORDER BY w.pos")
        arguments = (self.model, self.weights, *precisions, self.precision)
        failed = {}
        keys = iter(keys)
        try:
            while True:
                part = list(itertools.islice(keys, chunk))
                if not part:
                    break
                con.executemany("INSERT INTO wanted VALUES (?, ?, ?, ?)", part)
                del part
                blocks = {}  # dim -> (slots, bytearray of their little-endian float32 rows)
                for pos, dim, blob in con.execute(query, arguments):
                    if dim > 0 and len(blob) == 4 * dim:
                        slots, data = blocks.setdefault(dim, ([], bytearray()))
                        slots.append(pos)
                        data += blob
                    elif dim == 0:  # a remembered failure; the blob holds the reason
                        failed[pos] = bytes(blob).decode("utf-8", "replace")
                con.execute("DELETE FROM wanted")
                con.commit()
                for dim, (slots, data) in blocks.items():
                    put(np.asarray(slots, dtype=np.int64),
                        np.frombuffer(data, dtype="<f4").reshape(len(slots), dim).astype(np.float32, copy=False))
                del blocks
        finally:
            if con.in_transaction:  # a chunk that failed half-way: its temporary rows go
                try:
                    con.rollback()
                except sqlite3.Error:
                    pass
        return failed

    def store(self, rows):
        """``rows``: list of (path_bytes, size, mtime_ns, vector or reason string); committed at once."""
        values = []
        for p, s, m, v in rows:
            if isinstance(v, str):
                values.append((self.model, self.weights, self.precision, p, s, m, 0, v.encode("utf-8")))
            else:
                values.append((self.model, self.weights, self.precision, p, s, m, int(v.shape[0]),
                               np.asarray(v, dtype="<f4").tobytes()))
        self.con.executemany(
            f"INSERT OR REPLACE INTO {_CACHE_TABLE} (model, weights, precision, path, size, mtime_ns, dim, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        self.con.commit()

    def close(self):
        try:
            self.con.close()
        except sqlite3.Error:
            pass


def open_cache(cache_dir, model, weights, precision="fp32"):
    if cache_dir is False:
        return None
    directory = default_cache_dir() if cache_dir is None or cache_dir is True else os.path.expanduser(
        os.fspath(cache_dir))
    try:
        return _Cache(directory, model, weights, precision)
    except (OSError, sqlite3.Error) as exc:
        cache_warning(f"embedding cache in {directory} cannot be used ({exc}); embedding without a cache")
        return None


def cache_warning(message):
    """Tell the user that the cache is left out, in one line.

    A WARNING of the ``activeft_label.embeddings.cache`` logger, not a Python warning (whose default display adds
    the file, line and source of the call) and not a change to the host's warning or logging set-up: where the
    host configured no logging, Python's last-resort handler prints just the message on stderr.
    """
    _log.warning("%s", message)
