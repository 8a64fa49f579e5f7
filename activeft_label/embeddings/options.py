"""How to embed: the encoder and how its images are read, as one object every face builds once and passes down."""

from dataclasses import asdict, dataclass
from typing import Optional, Union

from .names import DEFAULT_MODEL


@dataclass(frozen=True)
class EmbeddingOptions:
    """The settings of an embedding run, everything but the items and the device.

    Parameters
    ----------
    model : str, default="efficientnet-lite0"
        The offline default encoder, or an open_clip model name.
    pretrained : str, optional
        open_clip weights: a pretrained tag or a local checkpoint file.
    batch_size : int, default=32
        Images per encoder batch.
    num_workers : int, optional
        Image loading processes (default: up to 4, none for small pools).
    cache_dir : str, None or False
        Where embeddings are cached (None: the default folder); ``False``
        neither reads nor writes the cache.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        The encoder's number format: ``auto`` (fp32 today), ``fp32``, or
        ``bf16`` (faster where the device computes it natively; see
        :mod:`activeft_label.embeddings.precision`).
    ray_address : str, optional
        Embed on this Ray cluster (``"auto"``, ``HOST:PORT`` or
        ``ray://HOST:PORT``) instead of in this process; see
        :mod:`activeft_label.embeddings.on_ray`.
    """

    model: str = DEFAULT_MODEL
    pretrained: Optional[str] = None
    batch_size: int = 32
    num_workers: Optional[int] = None
    cache_dir: Union[str, None, bool] = None
    precision: str = "auto"
    ray_address: Optional[str] = None

    def as_kwargs(self):
        """Keyword arguments of :func:`activeft_label.embed_images` and the connectors' embedding functions."""
        return asdict(self)


__all__ = ["EmbeddingOptions"]
