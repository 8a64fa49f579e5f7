"""The whole job: preview, pull, select, push."""

import time

from ...errors import InputError
from .checks import preview
from .defaults import DEFAULT_RANK_FIELD, DEFAULT_RUN_NAME, DEFAULT_TAG
from .pull import progress_reporter, pull
from .push import push, write_embeddings


def select_samples(collection, budget, *, method="activeft", embeddings_field=None, model=None, pretrained=None,
                   store_embeddings=None, exclude_labeled=None, tag=DEFAULT_TAG, rank_field=DEFAULT_RANK_FIELD,
                   run_name=DEFAULT_RUN_NAME, loss=None, temperature=0.07, lr=1e-3, iterations=300, seed=0,
                   center=False, device="auto", batch_size=32, num_workers=None, cache_dir=None, progress=False,
                   rank_offset=0, extra=None, replace=False, precision="auto", cores=None, update=None,
                   ray_address=None):
    """Select samples of a dataset or view to annotate, and write the selection back.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The target (image samples).
    budget : int or str
        A count (``50``) or a percentage of the target (``"5%"``).
    method : str, default="activeft"
        ``"activeft"`` or a baseline (see :data:`activeft_label.METHODS`).
    embeddings_field : str, optional
        Read embeddings from this vector field instead of computing them.
    model, pretrained : str, optional
        Encoder for computing embeddings (default ``efficientnet-lite0``).
    store_embeddings : str, optional
        Store computed embeddings in this field (a later run can read them
        with ``embeddings_field``).
    exclude_labeled : str or list of str, optional
        Field names or ``"tag:NAME"``; matching samples are treated as already
        labeled: never selected, and the new picks cover what they do not.
    tag, rank_field, run_name : str
        See :func:`push`.
    loss, temperature, lr, iterations, seed, center, device, cores, update
        Passed to :func:`activeft_label.select` (``loss`` to ``update``: for
        the methods that run ActiveFT, ``activeft`` and ``bilaf``'s core
        stage; ``cores``: bilaf only).
    batch_size, num_workers, cache_dir, precision, ray_address
        Passed to :func:`activeft_label.embeddings.embed_images`.
    progress : bool or callable, default=False
        ``True`` shows progress bars; a callable gets ``(fraction, message)``.
    rank_offset : int, default=0
        See :func:`push`.
    extra : dict, optional
        More JSON-ready facts to record in the run config.
    replace : bool, default=False
        Select ``run_name`` again although it was pushed to an annotation
        tool (refused while a later round depends on it).

    Returns
    -------
    SelectionSummary

    Raises
    ------
    InputError
        For anything the caller can fix (empty view, bad budget, bad
        embeddings field, unreadable images, bad names); nothing is written.
    """
    from ...selection import ACTIVEFT_METHODS, DEFAULT_LOSS
    from ...selection import select as run_selection

    started = time.perf_counter()
    report = progress_reporter(progress)
    if store_embeddings and embeddings_field:
        raise InputError("store_embeddings only applies when embeddings are computed; leave out embeddings_field "
                         "or store_embeddings")
    checks = preview(collection, budget, embeddings_field=embeddings_field, exclude_labeled=exclude_labeled,
                     tag=tag, rank_field=rank_field, run_name=run_name, store_embeddings=store_embeddings,
                     replace=replace)
    checks.raise_first()
    count = checks.budget_count

    report(0.0, "reading samples")
    pool = pull(collection, embeddings_field=embeddings_field, model=model, pretrained=pretrained,
                exclude_labeled=exclude_labeled, device=device, batch_size=batch_size, num_workers=num_workers,
                cache_dir=cache_dir, precision=precision, ray_address=ray_address,
                progress=(lambda f, m: report(0.05 + 0.75 * f, m)) if callable(progress) else progress)
    available = len(pool) - pool.fixed.size
    if count > available:
        why = f"{len(pool.skipped)} image(s) could not be read" if pool.skipped else ""
        if pool.fixed.size:
            why += (", and " if why else "") + f"{pool.fixed.size} are already labeled"
        raise InputError(f"budget {count} is larger than the {available} samples available for selection "
                         f"({why}); lower the budget")

    report(0.8, f"selecting {count} of {len(pool)} samples with {method}")
    options = dict(temperature=temperature, lr=lr, iterations=iterations, loss=loss or DEFAULT_LOSS) \
        if method in ACTIVEFT_METHODS else {}
    if update is not None:
        options["update"] = update
    if cores is not None:
        options["cores"] = cores
    result = run_selection(pool.features, count, method, fixed=pool.fixed if pool.fixed.size else None, seed=seed,
                           center=center, device=device, progress=progress is True, **options)

    report(0.95, "writing tags, ranks and the saved view")
    if store_embeddings:
        write_embeddings(collection, pool, store_embeddings)
    summary = push(collection, pool, result, tag=tag, rank_field=rank_field, run_name=run_name, budget=budget,
                   rank_offset=rank_offset, replace=replace, extra={"store_embeddings": store_embeddings or None,
                                                   "exclude_labeled": exclude_labeled or None, **(extra or {})})
    summary.elapsed = time.perf_counter() - started
    report(1.0, f"selected {summary.count} samples")
    return summary
