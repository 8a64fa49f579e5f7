"""The root group ``activeft`` and its own commands (select, embed, demo); the noun groups are added at the end."""

import dataclasses

import click

from ..version import __version__
from ..errors import InputError
from ..selection import ACTIVEFT_METHODS
from .evaluate import evaluate
from .fiftyone import fiftyone
from .labelstudio import labelstudio
from .options import (CONTEXT, common_options, friendly_errors, model_options, read_lines, report_skipped, say,
                      selection_options)
from .sync import sync

@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="activeft")
def main():
    """Pick the few items worth annotating, and queue them in priority order.

    activeft embeds every unlabeled item with a pretrained encoder, then runs
    ActiveFT (Xie et al., CVPR 2023): it optimises B points on the unit sphere
    so that they match the pool's distribution while staying diverse, and
    takes the item nearest each point.  The selection comes ranked: rank 1 is
    annotated first, and every prefix of the ranking is a good selection too.

    \b
    Quick start:
      activeft demo                              # offline demo on real images
      activeft select ./images --budget 1%       # writes selection.csv
      activeft select feats.npz -b 500 --plot map.png
      activeft sync push -d my-images --title Birds --labels a,b,c -b 1%   # FiftyOne → Label Studio
      activeft sync pull -d my-images --project 3 --label-field ground_truth

    Run `activeft COMMAND --help` for the options of each command.
    """
    from .options import own_process

    own_process()                # process-wide speed tuning, for this command's own process only


@main.command(context_settings=CONTEXT)
@click.argument("source", type=click.Path(exists=True))
@selection_options
@model_options
@common_options
@click.option("--labeled", type=click.Path(exists=True, dir_okay=False),
              help="Text file of ids or paths already labeled (earlier rounds): they steer the new picks away "
                   "from what they cover and are never selected again.")
@click.option("--out", "-o", default="selection.csv", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the selection: .csv (rank,index,id,path,cluster_size) or .json.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also save a 2-D map of the pool (.png, .pdf, .svg).")
@click.option("--projection", type=click.Choice(["pca", "tsne"]), default="pca", show_default=True,
              help="Projection used by --plot.")
@click.option("--minibatch", type=click.IntRange(1), metavar="ROWS",
              help="ActiveFT on pools of millions: each step uses ROWS random items instead of the whole pool "
                   "(approximate, as the authors' ImageNet script; the final mapping uses every item).")
@click.option("--storage", type=click.Choice(["auto", "float32", "float16"]), default="auto", show_default=True,
              help="How the pool is held in memory: float16 halves it (10M × 384: 7.7 instead of 15.4 GB), "
                   "computing in float32 a chunk at a time.  auto: float16 for a float16 features file "
                   "(`activeft embed --dtype float16`), else float32.  Features files are memory-mapped.")
@click.option("--balance", type=float, metavar="λ",
              help="ActiveFT: weight of the loss's second term (1 in both sources; for --loss paper 0.01 measured "
                   "better, see bench/QUALITY.md).")
@friendly_errors
def select(source, budget, selection, embedding, device, quiet, labeled, out, plot, projection, minibatch, balance,
           storage):
    """Select items of SOURCE to annotate, ranked by priority.

    SOURCE is a folder of images (searched recursively), a text file with one
    image path per line, or a features file: .npy (one row per item, id = row
    number) or .npz with an array 'features' and optional 'ids'.

    Images are embedded first (cached, so a second run embeds nothing);
    unreadable images are skipped and reported.  The output lists one row per
    selected item, sorted by rank (1 = annotate first).
    """
    from ..budget import check_budget_form
    from ..files.output import check_output_path, write_selection
    from ..evaluation.plot import PLOT_SUFFIXES, check_plottable, plot_selection
    from ..files.pool import load_pool
    from ..devices import resolve_device
    from ..selection import select as run_selection

    check_output_path(out)
    if plot:
        check_output_path(plot, PLOT_SUFFIXES, what="--plot")
    resolve_device(device)
    check_budget_form(budget)
    labeled_names = read_lines(labeled) if labeled else []

    pool = load_pool(source, **embedding.as_kwargs(), device=device, progress=not quiet)
    report_skipped(pool.skipped)
    if pool.precision:
        say(f"Embedded {len(pool)} images ({pool.cached} from cache) in {pool.precision}.")
    if plot:
        check_plottable(*pool.features.shape, projection)
    fixed = pool.rows_of(labeled_names) if labeled_names else None
    for name, value in (("--minibatch", minibatch), ("--balance", balance)):
        if value is not None and selection.method not in ACTIVEFT_METHODS:
            raise InputError(f"{name} applies to --method {' and '.join(ACTIVEFT_METHODS)} only")
    selection = dataclasses.replace(selection, minibatch=minibatch, balance=balance)
    result = run_selection(pool.features, budget, **selection.as_kwargs(), fixed=fixed, device=device,
                           progress=not quiet, storage=storage)
    if plot:  # first: a plot that fails leaves no selection file behind
        plot_selection(pool.features, result, plot, projection=projection)
    write_selection(out, result.records(pool.ids, pool.paths, pool.source_index))

    details = (f", {result.params['loss']} loss, {selection.iterations} iterations"
               if selection.method == "activeft" else "")
    details += ", on centred features" if selection.center else ""
    details += ", float16 storage" if result.params.get("storage") == "float16" else ""
    say(f"Selected {result.budget} of {len(pool)} items with {selection.method}{details} in {result.elapsed:.1f} s.")
    if fixed is not None:
        say(f"{fixed.size} already labeled items were kept as fixed centroids.")
    say(f"Coverage: {result.coverage:.4f} (mean distance from each pool item to its nearest selected item; "
        f"lower is better).")
    say(f"Wrote {out} (rank 1 = annotate first)" + (f" and {plot}." if plot else "."))


@main.command(context_settings=CONTEXT)
@click.argument("source", type=click.Path(exists=True))
@model_options
@common_options
@click.option("--out", "-o", default="features.npz", show_default=True, type=click.Path(dir_okay=False),
              help="Output .npz with arrays 'features' (N×C) and 'ids'.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Number format of the written features: float16 (rows L2-normalised first) halves the file, and "
                   "`activeft select` then holds the pool in float16 too (for pools of millions).")
@friendly_errors
def embed(source, embedding, device, quiet, out, dtype):
    """Embed the images of SOURCE into a features file.

    SOURCE is a folder of images (recursive) or a text file of image paths.
    The .npz it writes can be given to `activeft select` in place of the
    images, e.g. to compare methods without embedding again.  It is stored
    uncompressed, so `activeft select` memory-maps it instead of loading it.
    """
    import numpy as np

    from ..files.output import check_output_path, write_atomic
    from ..files.pool import load_pool
    from ..devices import resolve_device
    from ..files.sources import is_features_file

    check_output_path(out, (".npz",))
    if is_features_file(source):
        raise click.UsageError(f"{source} is already a features file; give a folder or a list of images")
    resolve_device(device)                # also when every image comes from the cache
    pool = load_pool(source, **embedding.as_kwargs(), device=device, progress=not quiet)
    report_skipped(pool.skipped)
    features = pool.features.astype(np.float32, copy=False)
    if dtype == "float16":
        # Unit rows first: only directions matter for selection, and a raw feature above 65,504 would overflow.
        from ..selection import unit_rows

        half = np.empty(features.shape, dtype=np.float16)
        for start in range(0, features.shape[0], 65536):      # in chunks: no second float32 copy of the pool
            half[start:start + 65536] = unit_rows(features[start:start + 65536])
        features = half
    ids = np.asarray(pool.ids, dtype=str)
    # Streamed into the file: stored uncompressed, so that `activeft select` memory-maps it.
    write_atomic(out, lambda handle: np.savez(handle, features=features, ids=ids), mode="wb")
    say(f"Embedded {len(pool)} items ({pool.cached} from cache) in {pool.precision} into {out}: "
        f"features {pool.features.shape[0]}×{pool.features.shape[1]} {dtype}.")


@main.command(context_settings=CONTEXT)
@click.option("--workdir", default="activeft-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo images and outputs.")
@click.option("--size", default=2000, show_default=True, type=click.IntRange(100, 70000),
              help="Number of images in the demo pool.")
@click.option("--budget", "-b", default="1%", show_default=True, metavar="N|P%", help="How many to select.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@common_options
@friendly_errors
def demo(workdir, size, budget, seed, device, quiet):
    """Run the whole job offline on real images.

    Writes a pool of real images (Fashion-MNIST from Debian's
    dataset-fashion-mnist package; scikit-learn's digits where that is not
    installed) as PNG files, embeds them with the offline EfficientNet-Lite0
    encoder, selects 1% with ActiveFT, writes selection.csv and map.png, and
    compares the coverage with random selection.

    A --workdir that cannot be written is refused before anything is
    written; a run that fails or is interrupted removes the files and
    folders it created (PNGs of an earlier run are reused and kept).
    """
    from .demo import run_demo

    run_demo(workdir, size=size, budget=budget, seed=seed, device=device, progress=not quiet, echo=say)


# The command groups, one module each; they import the tools (FiftyOne, the Label Studio SDK) inside their commands.
for _group in (fiftyone, labelstudio, sync, evaluate):
    main.add_command(_group)
