"""`activeft demo`: the whole job on real images, offline (the images come from :mod:`activeft_label.files.demo`)."""

import time
from pathlib import Path

import numpy as np

from ..budget import parse_budget
from ..devices import resolve_device
from ..evaluation.plot import plot_selection
from ..files.demo import demo_images, write_pngs
from ..files.output import write_atomic, write_selection
from ..files.pool import load_pool


def run_demo(workdir, *, size=2000, budget="1%", seed=0, device="auto", progress=True, echo=print):
    """Build the pool, embed it, select with ActiveFT, write outputs, print a comparison with random."""
    from ..selection import select

    resolve_device(device)
    workdir = Path(workdir)
    images, labels, names, source = demo_images(size, seed)
    parse_budget(budget, len(images))                 # checked before any file is written
    echo(f"Pool: {len(images)} images of {source}, written to {workdir / 'images'}")
    write_pngs(images, workdir / "images")
    write_atomic(workdir / "labels.csv", "id,label,class\n" + "".join(
        f"img_{k:05d}.png,{label},{names[label]}\n" for k, label in enumerate(labels)))

    started = time.perf_counter()
    pool = load_pool(workdir / "images", device=device, progress=progress)
    echo(f"Embedded with efficientnet-lite0 in {time.perf_counter() - started:.1f} s "
         f"({pool.cached} of {len(pool)} from cache).")
    pool_labels = labels[pool.source_index]

    result = select(pool.features, budget, "activeft", seed=seed, device=device, progress=progress)
    write_selection(workdir / "selection.csv", result.records(pool.ids, pool.paths, pool.source_index))
    plot_selection(pool.features, result, workdir / "map.png", labels=pool_labels,
                   title=f"ActiveFT: {result.budget} of {len(pool)} {source.split(' (')[0]} images")

    randoms = [select(pool.features, result.budget, "random", seed=s, device=device) for s in range(5)]
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
    return result
