"""A pool of unlabeled items ready for selection: features plus who each row is.

:func:`load_pool` turns the command line's SOURCE (a folder of images, a text
file of image paths, or a ``.npy``/``.npz`` features file) into a :class:`Pool`.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Pool:
    """Features of the items that could be read, and their identities.

    Attributes
    ----------
    features : np.ndarray (N, C) float32
    ids : list of str, one per row (a path relative to the folder, a list entry, or a features file id)
    paths : list of str or None, absolute image paths (None for a features file)
    source_index : np.ndarray (N,), each row's position in the source listing
    skipped : list of (path, reason), items (and subfolders of a folder) that could not be read
    cached : int, rows that came from the embeddings cache
    precision : str, the number format the encoder ran in ("fp32", "bf16"; "" for a features file)
    """

    features: np.ndarray
    ids: list
    paths: list = None
    source_index: np.ndarray = None
    skipped: list = field(default_factory=list)
    cached: int = 0
    precision: str = ""

    def __len__(self):
        return int(self.features.shape[0])

    def rows_of(self, names):
        """Feature rows of the given ids or paths; unknown names raise InputError."""
        lookup = {name: row for row, name in enumerate(self.ids)}
        if self.paths is not None:
            lookup.update({os.path.realpath(p): row for row, p in enumerate(self.paths)})
        rows, unknown = [], []
        for name in names:
            key = name if name in lookup else os.path.realpath(name)
            if key in lookup:
                rows.append(lookup[key])
            else:
                unknown.append(name)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise InputError(f"{len(unknown)} labeled item(s) are not in the pool: {shown}; "
                             f"list ids or paths exactly as in the selection CSV")
        return np.asarray(sorted(set(rows)), dtype=np.int64)


def load_pool(source, *, model=None, pretrained=None, device="auto", batch_size=32, num_workers=None,
              cache_dir=None, progress=True, precision="auto", ray_address=None):
    """Read a features file, or list and embed the images of a folder or list file (in ``precision``)."""
    from .sources import is_features_file, list_images, load_features

    source = os.fspath(source)
    if is_features_file(source):
        features, ids = load_features(source)
        return Pool(features=features, ids=list(ids), paths=None, source_index=np.arange(features.shape[0]))

    from ..embeddings import DEFAULT_MODEL, embed_images

    unlisted = []
    paths = list_images(source, skipped=unlisted)
    embedded = embed_images(paths, model=model or DEFAULT_MODEL, pretrained=pretrained, batch_size=batch_size,
                            num_workers=num_workers, device=device, cache_dir=cache_dir, progress=progress,
                            precision=precision, ray_address=ray_address)
    if embedded.features.shape[0] == 0:
        raise InputError(f"none of the {len(paths)} images under {source!r} could be read "
                         f"(first problem: {embedded.skipped[0][0]}: {embedded.skipped[0][1]})")
    base = source if os.path.isdir(source) else None
    kept = np.asarray(embedded.kept, dtype=np.int64)
    kept_paths = [os.path.abspath(paths[i]) for i in kept]
    ids = [os.path.relpath(p, base) if base else p for p in kept_paths]
    return Pool(features=embedded.features, ids=ids, paths=kept_paths, source_index=kept,
                skipped=unlisted + list(embedded.skipped), cached=int(embedded.cached),
                precision=embedded.precision)
