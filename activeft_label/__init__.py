"""activeft-label: pick the few items worth annotating, ActiveFT-style, and hand
them to the annotation tools in priority order.

Public API::

    from activeft_label import select, embed_images, parse_budget

    result = select(features, "1%")            # ActiveFT, released loss form
    result.ranked_indices                      # rows to annotate, rank 1 first

The house, imports flowing one way (each layer imports only the ones below it)::

    cli/, app/                 the command line and the FiftyOne App operators (faces)
    sync/                      FiftyOne <-> Label Studio: the only code that knows both tools
    connectors/fiftyone/       a dataset or view in, tags, ranks and a saved view out
    connectors/labelstudio/    a project's tasks in, a prioritized queue out
    evaluation/, files/        the linear probe and the map; local folders, lists and output files
    selection/, embeddings/    ActiveFT and the baselines; encoders and the feature cache
    devices, budget, errors    shared by every layer
"""

from .version import __version__
from .budget import parse_budget
from .devices import process_tuning
from .errors import ActiveFTError, InputError
from .selection import METHODS


from .selection.options import SelectionOptions

# Loaded on first use (PEP 562): they need torch, and `activeft --help` stays fast without it.
_LAZY = {"select": "selection", "SelectionResult": "selection", "EmbeddingOptions": "embeddings.options",
         "load_pool": "files.pool"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def embed_images(paths, model="efficientnet-lite0", pretrained=None, *, batch_size=32, num_workers=None,
                 device="auto", cache_dir=None, progress=True, precision=None, ray_address=None):
    """Embed image files with a pretrained encoder, through the on-disk cache.

    Parameters
    ----------
    paths : list of str or path-like
        Image files (see :func:`activeft_label.files.list_images`).
    model : str or Encoder, default="efficientnet-lite0"
        The offline default encoder, an open_clip model name, or a loaded
        :class:`activeft_label.embeddings.Encoder`.
    pretrained : str, optional
        open_clip weights: a pretrained tag or a local checkpoint file.
    batch_size : int, default=32
    num_workers : int, optional
        DataLoader workers (default ``min(4, cpu_count)``, 0 for small pools).
    device : str, default="auto"
    cache_dir : str, None or False
        The cache folder (None: the default); ``False`` disables the cache.
    progress : bool, default=True
    precision : {"auto", "fp32", "bf16"}, optional
        ``auto`` (the default, unless ``model`` is a loaded Encoder: then its
        own) is fp32 today.  ``bf16`` runs the encoder under bf16 autocast,
        about 1.5× as fast where the device computes bf16 natively (CPUs with
        AVX-512 BF16 or AMX, CUDA GPUs with bf16; elsewhere InputError), with
        the same selection quality measured but features that move (cosine to
        fp32 0.944–1, mean 0.996).  Cached rows are reused only in the same
        precision.
    ray_address : str, optional
        Embed on the Ray cluster at this address (``"auto"``, ``HOST:PORT``,
        ``ray://HOST:PORT``; needs ``pip install 'activeft-label[ray]'``):
        images decoded on CPU tasks, the encoder in an actor pool, the rows
        written to the same cache as locally.  The workers read the images at
        the same paths (a shared file system).

    Returns
    -------
    EmbeddingResult
        ``features`` (N×C float32, rows of the readable images), ``kept``
        (their positions in ``paths``), ``skipped`` ((path, reason) pairs),
        ``cached`` (rows read from the cache), ``precision`` (what was used).

    See :func:`activeft_label.embeddings.embed_images` for the details.
    """
    from .embeddings import embed_images as embed

    return embed(paths, model, pretrained, batch_size=batch_size, num_workers=num_workers, device=device,
                 cache_dir=cache_dir, progress=progress, precision=precision, ray_address=ray_address)


__all__ = ["select", "embed_images", "parse_budget", "load_pool", "SelectionResult", "SelectionOptions",
           "EmbeddingOptions", "METHODS", "ActiveFTError", "InputError", "process_tuning", "__version__"]
