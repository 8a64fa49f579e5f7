"""Pulling a dataset or view into a selection pool: its ids, fixed samples and embeddings."""

import math

import numpy as np

from ...errors import InputError
from .checks import check_target, exclusion_rules, labeled_mask, read_vectors
from .defaults import PROGRESS_CHUNK
from .results import FiftyOnePool
from .target import embedding_fields


def progress_reporter(progress):
    """A function (fraction, message) -> None from ``progress`` (callable, bool or None)."""
    if callable(progress):
        return progress
    return lambda fraction, message: None


def pull(collection, *, embeddings_field=None, model=None, pretrained=None, exclude_labeled=None, device="auto",
         batch_size=32, num_workers=None, cache_dir=None, progress=False, precision="auto", ray_address=None):
    """Read the target's samples and their embeddings.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The samples to select from (image media only).
    embeddings_field : str, optional
        Read the embeddings from this vector field.  Every sample must have a
        vector, all of one length, all finite; otherwise :class:`InputError`.
    model : str, optional
        Compute the embeddings with this encoder (default
        ``efficientnet-lite0``); ignored when ``embeddings_field`` is given.
    pretrained : str, optional
        open_clip weights: a pretrained tag or a checkpoint file.
    exclude_labeled : str or list of str, optional
        Field names or ``"tag:NAME"``: samples that have a value in the field
        or carry the tag become fixed rows (already labeled).
    device, batch_size, num_workers, cache_dir, precision, ray_address
        Passed to :func:`activeft_label.embeddings.embed_images`.
    progress : bool or callable, default=False
        ``True`` shows progress bars on stderr; a callable is called as
        ``progress(fraction, message)`` while images are embedded.

    Returns
    -------
    FiftyOnePool
    """
    check_target(collection)
    n = len(collection)
    if n == 0:
        raise InputError("the target view is empty: there is nothing to select from; widen the view or pick "
                         "another target")
    rules = exclusion_rules(collection, exclude_labeled)
    labeled = labeled_mask(collection, rules) if rules else np.zeros(n, dtype=bool)
    report = progress_reporter(progress)

    if embeddings_field is not None:
        if embeddings_field not in collection.get_field_schema():
            raise InputError(f"the target has no field {embeddings_field!r} (vector fields: "
                             f"{', '.join(embedding_fields(collection)) or 'none'})")
        report(0.0, f"reading embeddings from field {embeddings_field!r}")
        ids, features = read_vectors(collection, embeddings_field)
        paths = collection.values("filepath")
        return FiftyOnePool(sample_ids=ids, filepaths=list(paths), features=features,
                            fixed=np.flatnonzero(labeled).astype(np.int64), skipped=[], target_size=n,
                            embeddings=f"field {embeddings_field!r}", embeddings_field=embeddings_field)

    from ...embeddings import DEFAULT_MODEL, embed_images, load_encoder
    from ...embeddings.heap import large_blocks_stay_in_heap

    model = model or DEFAULT_MODEL
    ids, paths = collection.values(["id", "filepath"])
    options = dict(batch_size=batch_size, num_workers=num_workers, device=device, cache_dir=cache_dir,
                   precision=precision, ray_address=ray_address)
    if callable(progress) and ray_address is None:
        # Embed in chunks to report progress; load the encoder once, and only when the cache does not have it all.
        chunk = max(PROGRESS_CHUNK, math.ceil(n / 50))
        encoder, parts, kept, skipped, cached = None, [], [], [], 0
        name, weights, used = model, pretrained, None
        with large_blocks_stay_in_heap():           # one heap setting for all chunks, not one per call
            for start in range(0, n, chunk):
                report(start / n, f"embedding images ({start} of {n})")
                part = embed_images(paths[start:start + chunk], model=encoder or model,
                                    pretrained=None if encoder else pretrained, progress=False, **options)
                if encoder is None and part.embedded > 0 and start + chunk < n:
                    encoder = load_encoder(model, pretrained, device=device, precision=part.precision)
                parts.append(part.features)
                kept.extend((np.asarray(part.kept) + start).tolist())
                skipped.extend(part.skipped)
                cached += part.cached
                name, weights, used = part.model, part.weights, part.precision
        report(1.0, f"embedded {n} images")
        dims = {p.shape[1] for p in parts if p.shape[0]}
        features = (np.concatenate([p for p in parts if p.shape[0]]) if dims
                    else np.zeros((0, 0), dtype=np.float32))
        kept = np.asarray(kept, dtype=np.int64)
    else:
        if callable(progress):
            # On Ray: one job (each costs its start-up), its progress counted in images.
            def told(done, total):
                report(done / total, f"embedding images on Ray ({done} of {total})")
        else:
            told = bool(progress)
        embedded = embed_images(paths, model=model, pretrained=pretrained, progress=told, **options)
        features, kept, skipped = embedded.features, np.asarray(embedded.kept, dtype=np.int64), embedded.skipped
        cached, name, weights, used = embedded.cached, embedded.model, embedded.weights, embedded.precision

    skipped_set = set(range(n)) - set(kept.tolist())
    reasons = {path: reason for path, reason in skipped}
    skipped_rows = [(ids[i], paths[i], reasons.get(paths[i], "could not be read")) for i in sorted(skipped_set)]
    if kept.size == 0:
        first = skipped_rows[0]
        raise InputError(f"none of the {n} images of the target could be read (first: {first[1]}: {first[2]}); "
                         f"check the filepaths")
    fixed = np.flatnonzero(labeled[kept]).astype(np.int64)
    return FiftyOnePool(sample_ids=[ids[i] for i in kept], filepaths=[paths[i] for i in kept],
                        features=np.ascontiguousarray(features, dtype=np.float32), fixed=fixed,
                        skipped=skipped_rows, target_size=n,
                        embeddings=f"{name} ({used})" if used else str(name), embeddings_field=None,
                        model=str(name), weights=str(weights), cached=int(cached), precision=used)
