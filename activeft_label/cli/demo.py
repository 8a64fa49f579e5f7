"""`activeft demo`: the whole job on real images, offline (the images come from :mod:`activeft_label.files.demo`)."""

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..budget import parse_budget
from ..devices import resolve_device
from ..errors import ActiveFTError, InputError
from ..evaluation.plot import plot_selection
from ..files.demo import demo_images, write_pngs
from ..files.output import write_atomic, write_selection
from ..files.pool import load_pool


def run_demo(workdir, *, size=2000, budget="1%", seed=0, device="auto", progress=True, echo=print):
    """Build the pool, embed it, select with ActiveFT, write outputs, print a comparison with random.

    A run that fails or is interrupted (Ctrl-C) removes the files and folders it created, so ``workdir`` is
    left as it was found (PNGs of an earlier run, which are reused, stay).  A ``workdir`` that cannot be
    written is refused with :class:`InputError` before anything is written.
    """
    from ..selection import select

    resolve_device(device)
    workdir = Path(workdir)
    images, labels, names, source = demo_images(size, seed)
    parse_budget(budget, len(images))                 # checked before any file is written
    created = []
    try:
        _prepare(workdir, created)
        echo(f"Pool: {len(images)} images of {source}, written to {workdir / 'images'}")
        with _writing(workdir):
            write_pngs(images, workdir / "images", created)

        started = time.perf_counter()
        pool = load_pool(workdir / "images", device=device, progress=progress)
        echo(f"Embedded with efficientnet-lite0 in {pool.precision} in {time.perf_counter() - started:.1f} s "
             f"({pool.cached} of {len(pool)} from cache).")
        pool_labels = labels[pool.source_index]

        result = select(pool.features, budget, "activeft", seed=seed, device=device, progress=progress)
        randoms = [select(pool.features, result.budget, "random", seed=s, device=device) for s in range(5)]
        # The outputs come last, the slow plot first, so that an interruption before them replaces no file of an
        # earlier run.
        with _writing(workdir):
            _track(workdir / "map.png", created, lambda path: plot_selection(
                pool.features, result, path, labels=np.asarray(names)[pool_labels],
                title=f"ActiveFT: {result.budget} of {len(pool)} {source.split(' (')[0]} images"))
            _track(workdir / "selection.csv", created, lambda path: write_selection(
                path, result.records(pool.ids, pool.paths, pool.source_index)))
            _track(workdir / "labels.csv", created, lambda path: write_atomic(path, "id,label,class\n" + "".join(
                f"img_{k:05d}.png,{label},{names[label]}\n" for k, label in enumerate(labels))))

        classes = len(np.unique(pool_labels[result.indices]))
        random_classes = [len(np.unique(pool_labels[r.indices])) for r in randoms]
        random_cov = np.array([r.coverage for r in randoms])
        echo(f"ActiveFT selected {result.budget} of {len(pool)} images in {result.elapsed:.1f} s.")
        echo(f"  coverage (mean distance to the nearest selected image, lower is better): "
             f"ActiveFT {result.coverage:.4f} vs random {random_cov.mean():.4f} ± {random_cov.std():.4f} (5 seeds)")
        echo(f"  classes among the picks: ActiveFT {classes} of {len(names)} vs random "
             f"{np.mean(random_classes):.1f} on average")
        top = ", ".join(names[pool_labels[i]] for i in result.ranked_indices[:5])
        echo(f"  first five to annotate: {top}")
        echo(f"Wrote {workdir / 'selection.csv'} and {workdir / 'map.png'}.")
    except BaseException:
        _remove(created)
        raise
    return result


def _prepare(workdir, created):
    """Create ``workdir``/images (recording each folder made) and prove a file can be written there."""
    images = workdir / "images"
    missing = []
    folder = images
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        with tempfile.TemporaryFile(dir=images):
            pass
    except OSError as exc:
        raise InputError(f"--workdir {str(workdir)!r} cannot be written ({exc.strerror or exc}); "
                         f"pass another --workdir") from None


@contextlib.contextmanager
def _writing(workdir):
    """A write that fails half-way (a full disk, a folder made read-only meanwhile) as one line, exit 1."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or workdir
        raise ActiveFTError(f"cannot write {where} ({exc.strerror or exc}); free some space there or pass "
                            f"another --workdir") from None


def _track(path, created, write):
    existed = os.path.lexists(path)
    write(path)
    if not existed:
        created.append(path)


def _remove(created):
    """Remove what this run created, newest first; a folder is kept when something else was put in it."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
