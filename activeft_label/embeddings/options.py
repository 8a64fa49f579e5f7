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
        The encoder's number format: ``auto`` is bf16 autocast where the
        device computes bf16 natively, else fp32 (see
        :mod:`activeft_label.embeddings.precision`).
    """

    model: str = DEFAULT_MODEL
    pretrained: Optional[str] = None
    batch_size: int = 32
    num_workers: Optional[int] = None
    cache_dir: Union[str, None, bool] = None
    precision: str = "auto"

    def as_kwargs(self):
        """Keyword arguments of :func:`activeft_label.embed_images` and the connectors' embedding functions."""
        return asdict(self)


__all__ = ["EmbeddingOptions"]
