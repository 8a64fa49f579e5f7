"""The selection of ``activeft labelstudio setup``, recorded so that a re-run with the same inputs reuses it.

Selecting is the slow part of a setup (the optimizer: 79 s for 1,000 of 1,200
images measured here), and it depends only on its inputs.  So every setup
records its selection in a small JSON file under the embeddings cache
folder, ``<cache dir>/labelstudio/selections/<key>.json``, where ``key`` is a
SHA-256 over everything the selection depends on:

* the pool: every item's stable id (its path relative to the folder), in
  order, and its features (the exact bytes of the embedding matrix, so the
  same images embedded by the same model and weights);
* the budget, as the number of items it comes to;
* the selection options (method, loss form, iterations, temperature,
  learning rate, seed, centring, minibatch, balance);
* this record's format and the package version (a new release selects again).

A run whose key has a record takes its selection from there and does not run
the optimizer; any changed input gives another key, and the selection runs as
before.  The project is then brought to that selection exactly as after a
fresh one (tasks found by ``activeft_id``), so a project that already holds it
is left unchanged.  The device is not part of the key: the same inputs on
another device give an equally valid selection.  Records are small (a few
numbers per selected item); deleting the folder only costs a re-selection.
``cache_dir=False`` (``--no-cache``) neither reads nor writes records.
"""

import datetime
import hashlib
import json
import os

import numpy as np

from ...files.output import write_atomic

#: Format of the records; a record of another format is ignored.
RECORD_FORMAT = 1


def selection_key(pool, budget, options):
    """The hex SHA-256 of a selection's inputs: ``pool`` (ids, features), the budget count and ``options`` (dict)."""
    from ...version import __version__

    features = np.ascontiguousarray(pool.features)
    digest = hashlib.sha256()
    header = {"format": RECORD_FORMAT, "version": __version__, "budget": int(budget),
              "options": {key: options[key] for key in sorted(options)},
              "features": [str(features.dtype), list(features.shape)]}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    digest.update(json.dumps([str(item) for item in pool.ids]).encode("utf-8"))
    digest.update(memoryview(features).cast("B"))
    return digest.hexdigest()


def records_folder(cache_dir=None):
    """The folder of the records: ``<cache_dir or the default cache>/labelstudio/selections``."""
    from ...embeddings import default_cache_dir

    return os.path.join(cache_dir or default_cache_dir(), "labelstudio", "selections")


def _plain(value):
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_selection(key, result, pool, cache_dir=None):
    """Write the record of ``result`` (a SelectionResult over ``pool``) under ``key``; returns its path."""
    folder = records_folder(cache_dir)
    os.makedirs(folder, exist_ok=True)
    record = {
        "format": RECORD_FORMAT, "key": key,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pool_size": len(pool.ids), "method": result.method,
        "indices": [int(i) for i in result.indices], "ranks": [int(r) for r in result.ranks],
        "ids": [str(pool.ids[int(i)]) for i in result.indices],
        "cluster_sizes": [int(c) for c in result.cluster_sizes], "coverage": float(result.coverage),
        "loss": None if result.loss is None else float(result.loss),
        "loss_history": [float(x) for x in result.loss_history], "seed": _plain(result.seed),
        "params": _plain(result.params), "elapsed": float(result.elapsed),
    }
    path = os.path.join(folder, f"{key}.json")
    write_atomic(path, json.dumps(record))
    return path


def load_selection(key, pool, budget, cache_dir=None):
    """The recorded selection of ``key`` as ``(SelectionResult, record dict, path)``, or None.

    A record that is missing, unreadable, of another format, or that does
    not fit ``pool`` and ``budget`` (ids, sizes, a permutation of ranks) is
    ignored.
    """
    from ...selection import SelectionResult

    path = os.path.join(records_folder(cache_dir), f"{key}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        indices = np.asarray(record["indices"], dtype=np.int64)
        ranks = np.asarray(record["ranks"], dtype=np.int64)
        sizes = np.asarray(record["cluster_sizes"], dtype=np.int64)
        fits = (record.get("format") == RECORD_FORMAT and record.get("key") == key
                and record.get("pool_size") == len(pool.ids) and indices.size == int(budget) == ranks.size
                == sizes.size and indices.size > 0 and indices.min() >= 0 and indices.max() < len(pool.ids)
                and np.unique(indices).size == indices.size
                and sorted(ranks.tolist()) == list(range(1, indices.size + 1))
                and record.get("ids") == [str(pool.ids[int(i)]) for i in indices])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not fits:
        return None
    result = SelectionResult(method=record["method"], indices=indices, ranks=ranks, cluster_sizes=sizes,
                             coverage=float(record["coverage"]), loss=record.get("loss"),
                             loss_history=list(record.get("loss_history") or []), seed=record.get("seed"),
                             params=dict(record.get("params") or {}), elapsed=float(record.get("elapsed") or 0.0))
    return result, record, path


def select_or_reuse(pool, budget, options, *, device="auto", cache_dir=None, progress=True):
    """The selection of ``budget`` items of ``pool``: the recorded one for these inputs, else a new one (recorded).

    Parameters
    ----------
    pool : activeft_label.files.pool.Pool
    budget : int or str
    options : dict
        Keyword arguments of :func:`activeft_label.selection.select` (method included), as
        ``SelectionOptions.as_kwargs()`` gives them.
    device : str
    cache_dir : str, None or False
        The embeddings cache folder (None: the default); ``False``: no record is read or written.
    progress : bool

    Returns
    -------
    (SelectionResult, dict or None)
        The selection, and the record it was taken from (``recorded_at``,
        ``path``, ``key``) or None when it was made now.
    """
    from ...budget import parse_budget
    from ...selection import select

    count = parse_budget(budget, len(pool.ids))
    key = None
    if cache_dir is not False:
        key = selection_key(pool, count, options)
        found = load_selection(key, pool, count, cache_dir)
        if found is not None:
            result, record, path = found
            return result, {"recorded_at": record.get("recorded_at"), "path": path, "key": key}
    result = select(pool.features, budget, device=device, progress=progress, **options)
    if key is not None:
        try:
            save_selection(key, result, pool, cache_dir)
        except OSError:
            pass  # no record: a re-run selects again
    return result, None
