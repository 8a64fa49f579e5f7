"""The :func:`select` entry point (imported lazily by the package, so that importing the package and the
command line's ``--help`` do not load torch)."""

import numbers
import time

import numpy as np
import torch

from ..budget import parse_budget
from ..errors import InputError
from . import DEFAULT_LOSS, DEFAULT_UPDATE, LOSS_FORMS, METHODS, UPDATE_FORMS
from ..devices import resolve_device, threads_for
from ._common import (DEFAULT_MEMORY_BUDGET, coverage_distance, feature_matrix, nearest, prepare_points,
                      rows_of, storage_dtype)
from .activeft import centroids_to_samples, loss_value, optimize_centroids
from .bilaf import PARAMS as BILAF_PARAMS, check_params as check_bilaf_params, select_bilaf
from .ranking import priority_order
from .result import SelectionResult

__all__ = ["select"]


def select(
    features,
    budget,
    method="activeft",
    *,
    fixed=None,
    loss=DEFAULT_LOSS,
    update=DEFAULT_UPDATE,
    temperature=0.07,
    lr=1e-3,
    iterations=300,
    seed=0,
    device="auto",
    memory_budget=DEFAULT_MEMORY_BUDGET,
    progress=False,
    center=False,
    storage="auto",
    **method_params,
):
    """Choose ``budget`` items of a pool to annotate.

    Parameters
    ----------
    features : array-like (N, C)
        One embedding per pool item (any scale: rows are L2-normalised here).
    budget : int or str
        A count (``300``) or a percentage of the pool (``"1%"``).
    method : str, default="activeft"
        ``"activeft"``, ``"bilaf"`` (ActiveFT core samples plus boundary
        samples, Lu et al., NeurIPS 2024: see :mod:`.bilaf`) or a baseline:
        ``"random"``, ``"kmeans"``, ``"coreset"``, ``"probcover"``, ``"typiclust"``.
    fixed : sequence of int, optional
        Rows already labeled (earlier rounds).  They act as fixed centroids,
        so the new picks cover what they do not, and are never selected.
        For ``bilaf`` they are also cores of their own clusters, counted as
        those clusters' picks.
    loss : {"released", "paper"}, default="released"
        ActiveFT loss form (see :mod:`.activeft`); for ``bilaf``, of its core stage.
    update : {"projected", "released"}, default="projected"
        How ActiveFT (and BiLAF's core stage) updates θ, for either loss form:
        ``"projected"`` renormalises θ after every Adam step (Algorithm 1 of
        the paper); ``"released"`` keeps θ a raw parameter normalised only
        inside the loss, exactly as the authors' released code does.
    temperature : float, default=0.07
        τ of the ActiveFT loss.
    lr : float, default=1e-3
        Adam learning rate.
    iterations : int, default=300
        Adam steps (for ``bilaf``: of the core stage).
    seed : int, default=0
        Seed of every random choice: same seed and device give the same selection.
    device : str, default="auto"
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    memory_budget : int, default=512 MiB
        Bytes of similarity blocks held in memory at once.
    progress : bool, default=False
        Show a progress bar on stderr.
    center : bool, default=False
        Compare items after subtracting the pool's mean direction (rows are
        L2-normalised, centred on their mean, normalised again), for every
        method.  Pretrained features crowd around a shared direction; centring
        spreads them.  See ``bench/QUALITY.md`` for what it changed on
        Fashion-MNIST.  The coverage figure is then measured in the centred space.
    storage : {"auto", "float32", "float16"}, default="auto"
        How the pool's unit rows are held: ``float16`` halves their memory
        (10M × 384: 7.7 GB instead of 15.4 GB) for pools that would not fit
        otherwise; every similarity is still computed in float32, a chunk of
        rows at a time.  ``auto``: float16 when ``features`` is a float16
        array (a float16 ``.npy`` or ``.npz``, memory-mapped), float32
        otherwise.  ``features`` may be a ``np.memmap``: it is read once, in
        chunks, and never copied whole.  ActiveFT (with or without
        ``minibatch``) and the final mapping, ranking and coverage work on the
        float16 rows directly; ``bilaf`` and the baselines widen the pool to
        float32 first (they keep per-pair or per-cluster work that a pool of
        millions does not fit anyway).  float16 rounds each coordinate to
        about 3 significant digits: picks can differ from float32's where two
        items are that close.
    **method_params
        Extra parameters: of a baseline (e.g. ``delta`` for probcover), or of
        ActiveFT: ``balance`` (λ, default 1: the weight of R in the released
        form, of the diversity term in the paper form) and
        ``minibatch`` (rows per step; approximate, for pools of millions: see
        :func:`.activeft.optimize_centroids`).  ``bilaf`` takes ``balance``
        and ``minibatch`` for its core stage, and:

        ``cores`` : int, float or str, default None
            K, the core samples chosen by ActiveFT: a count (``50``), a
            fraction of the pool in (0, 1) (``0.005``) or a percentage
            (``"0.5%"``, rounded half up).  None: min(⌈0.5% of N⌉ − F, ⌊B/2⌋),
            at least 0, and at least 2 clusters (cores plus fixed rows) where
            B allows (the paper: 0.1% on CIFAR-10, 0.5% on CIFAR-100 and
            ImageNet).  ``budget`` must be at least ``cores``; 0 is allowed
            with ``fixed`` rows (they are then the only cores).
        ``k_neighbors`` : int, default 10
            k of the denoising: a member's density is its mean distance to its
            k nearest members already included.
        ``p_in`` : float in (0, 1], default 0.1
            Share of the remaining members added per denoising round.
        ``p_rm`` : float in [0, 1), default 0.1
            Share of each cluster (the last added) dropped as outliers.
        ``delta`` : float ≥ 1, default 1.1
            δ, the penalty δ^t on an opponent cluster already used t times.

    Returns
    -------
    SelectionResult
        For ``bilaf``, ``loss`` and ``loss_history`` are those of the core
        stage's ActiveFT run (None and empty without new cores).
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if loss not in LOSS_FORMS:
        raise InputError(f"unknown loss form {loss!r}; choose one of: {', '.join(LOSS_FORMS)}")
    if update not in UPDATE_FORMS:
        raise InputError(f"unknown update {update!r}; choose one of: {', '.join(UPDATE_FORMS)}")
    _check_positive("temperature", temperature)
    _check_positive("lr", lr)
    if not isinstance(iterations, numbers.Integral) or iterations < 0:
        raise InputError(f"iterations must be a whole number >= 0, got {iterations!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    accepted = _method_params(method)
    if method_params.keys() - accepted:
        unknown = ", ".join(sorted(method_params.keys() - accepted))
        raise InputError(f"method {method!r} has no parameter(s) {unknown}")

    array = feature_matrix(features)
    n = array.shape[0]
    fixed_idx = _check_fixed(fixed, n)
    count = parse_budget(budget, n, already_labeled=fixed_idx.size)
    dev = resolve_device(device)
    if not isinstance(center, (bool, np.bool_)):
        raise InputError(f"center must be True or False, got {center!r}")
    center = bool(center)
    storage_dtype(storage, array.dtype)                # an unknown storage is refused here, before any work

    params = {"method": method, "budget": count, "seed": int(seed), "device": str(dev), "fixed": int(fixed_idx.size),
              "center": center}
    if method in ("activeft", "bilaf"):  # checked before any work
        _check_activeft_params(method_params, n)
    if method == "bilaf":
        method_params = dict(method_params, **check_bilaf_params(
            {k: v for k, v in method_params.items() if k in BILAF_PARAMS}, n, count, fixed_idx.size))
    points = prepare_points(array, dev, storage=storage, center=center)
    if method != "activeft" and points.dtype != torch.float32:
        points = _widened(points)
    params["storage"] = "float16" if points.dtype == torch.float16 else "float32"
    fixed_t = torch.as_tensor(fixed_idx, dtype=torch.long, device=dev)
    step_work = float(n) * (count + fixed_idx.size) * array.shape[1]
    with threads_for(dev, step_work):        # one thread for small CPU problems, in the command line's process only
        indices, picked, ranks, sizes, coverage, loss_final, history = _run(
            method, points, count, fixed_t, fixed_idx, params, loss, temperature, lr, iterations, seed,
            memory_budget, progress, method_params, update)
    return SelectionResult(
        method=method, indices=indices, ranks=ranks, cluster_sizes=sizes, coverage=coverage,
        loss=loss_final, loss_history=list(history), seed=int(seed), params=params,
        elapsed=time.perf_counter() - started,
    )


def _check_activeft_params(method_params, n):
    balance = float(method_params.get("balance", 1.0))
    _check_positive("balance", balance)
    minibatch = method_params.get("minibatch")
    if minibatch is not None and (not isinstance(minibatch, numbers.Integral) or minibatch < 1):
        raise InputError(f"minibatch must be a whole number >= 1 (rows per step), got {minibatch!r}")
    return balance, (int(minibatch) if minibatch is not None and minibatch < n else None)


def _run(method, points, count, fixed_t, fixed_idx, params, loss, temperature, lr, iterations, seed,
         memory_budget, progress, method_params, update=DEFAULT_UPDATE):
    """The selection itself: (indices, picked, ranks, sizes, coverage, final loss, loss history)."""
    n = points.shape[0]
    loss_final, history = None, []
    if method in ("activeft", "bilaf"):
        balance, minibatch = _check_activeft_params(method_params, n)
        params.update(loss=loss, update=update, temperature=float(temperature), lr=float(lr),
                      iterations=int(iterations), balance=balance)
        if minibatch is not None:
            params["minibatch"] = minibatch
    if method == "activeft":
        bar = _progress_bar(progress, iterations, "ActiveFT")
        theta, history = optimize_centroids(
            points, count, fixed=fixed_t, loss=loss, temperature=temperature, lr=lr, iterations=iterations,
            balance=balance, seed=seed, memory_budget=memory_budget,
            minibatch=minibatch, update=update,
            progress=(lambda step, value: (bar.update(1), bar.set_postfix(loss=f"{value:.4f}"))) if bar else None,
        )
        if bar:
            bar.close()
        centers = torch.cat([theta, rows_of(points, fixed_t)]) if fixed_idx.size else theta
        loss_final = loss_value(points, centers, count, loss, temperature, balance, memory_budget)
        picked = centroids_to_samples(points, theta, fixed=fixed_t, memory_budget=memory_budget)
    elif method == "bilaf":
        own = {k: method_params[k] for k in BILAF_PARAMS}
        params.update(own)
        bar = _progress_bar(progress, iterations if own["cores"] else 0, "ActiveFT")
        found = select_bilaf(
            points, count, fixed=fixed_t, seed=int(seed), memory_budget=memory_budget, loss=loss,
            temperature=temperature, lr=lr, iterations=iterations, balance=balance, update=update,
            minibatch=minibatch, **own,
            progress=(lambda step, value: (bar.update(1), bar.set_postfix(loss=f"{value:.4f}"))) if bar else None,
        )
        if bar:
            bar.close()
        picked, history, loss_final = found.picks, found.history, found.loss
    else:
        from .baselines import BASELINES

        params.update(method_params)
        bar = _progress_bar(progress, count, method)
        picked = BASELINES[method](
            points, count, fixed=fixed_t, seed=int(seed), memory_budget=memory_budget,
            progress=(lambda done, total: bar.update(done - bar.n)) if bar else None, **method_params,
        )
        if bar:
            bar.close()

    indices = picked.detach().to("cpu").numpy().astype(np.int64)
    if np.unique(indices).size != count or np.isin(indices, fixed_idx).any():
        raise RuntimeError(f"{method} returned {np.unique(indices).size} distinct new items instead of {count}")
    ranks, sizes, coverage = _rank_and_cover(points, picked, fixed_t, memory_budget)
    return indices, picked, ranks, sizes, coverage, loss_final, history


def _rank_and_cover(points, picked, fixed, memory_budget):
    """Ranks, cluster sizes and the coverage figure of a selection."""
    count = picked.numel()
    centers = rows_of(points, torch.cat([picked.to(points.device), fixed]))
    assign, sim = nearest(points, centers, memory_budget)
    sizes = torch.bincount(assign, minlength=centers.shape[0]).cpu().numpy()[:count]
    baseline = None
    chosen = rows_of(points, picked)
    if fixed.numel():
        baseline = nearest(chosen, rows_of(points, fixed), memory_budget)[1].cpu().numpy()
    order = priority_order(chosen, sizes, baseline, memory_budget)
    ranks = np.empty(count, dtype=np.int64)
    ranks[order] = np.arange(1, count + 1)
    return ranks, sizes.astype(np.int64), coverage_distance(sim)


def _widened(points):
    """A float16 pool as float32 unit rows (for the methods that work on the whole matrix at once)."""
    wide = torch.empty(points.shape, dtype=torch.float32, device=points.device)
    step = 16384
    for start in range(0, points.shape[0], step):
        wide[start:start + step] = rows_of(points, slice(start, start + step))
    return wide


def _check_positive(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0 or not np.isfinite(value):
        raise InputError(f"{name} must be a number above 0, got {value!r}")


def _check_fixed(fixed, n):
    if fixed is None:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(fixed)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InputError("fixed must be a list of row numbers (whole numbers) of already labeled items")
    if array.min() < 0 or array.max() >= n:
        raise InputError(f"fixed row numbers must lie in 0..{n - 1}; got {int(array.min())}..{int(array.max())}")
    return np.unique(array.astype(np.int64))


def _method_params(method):
    """The keyword parameters ``method`` takes beyond select()'s own."""
    if method == "activeft":
        return {"balance", "minibatch"}
    if method == "bilaf":
        return {"balance", "minibatch", *BILAF_PARAMS}
    return {"probcover": {"delta"}, "typiclust": {"k_neighbors"}}.get(method, set())


def _progress_bar(enabled, total, description):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="step" if description == "ActiveFT" else "pick",
                leave=False, dynamic_ncols=True)
