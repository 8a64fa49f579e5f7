"""Deprecated location, kept for one release: use :mod:`activeft_label.files.pool` (or ``activeft_label.load_pool``)."""

from .files.pool import Pool, load_pool

__all__ = ["Pool", "load_pool"]
