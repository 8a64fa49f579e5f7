"""Reading image files for an encoder: RGB conversion, failures named, batches that skip what cannot be read."""

import numpy as np
import torch
from PIL import Image, ImageOps

from .encoders import short_error


def _open_rgb(path, min_side=None):
    """Read an image file fully and return it as an RGB PIL image (alpha composited on white).

    ``min_side``: JPEGs whose shorter side is at least twice this are decoded
    at a reduced scale (1/2, 1/4 or 1/8, libjpeg's DCT scaling) that keeps the
    shorter side at or above ``min_side``.  A 12-megapixel photo then decodes
    to well under a megapixel instead of being decoded in full and thrown away
    by the encoder's resize.  None: always decode in full.
    """
    with Image.open(path) as image:
        if min_side and image.format == "JPEG" and min(image.size) >= 2 * min_side:
            w, h = image.size
            shorter = min(w, h)
            # draft() picks the largest reduction that keeps both sides at or above the size asked for.
            image.draft(None, (max(1, w * min_side // shorter), max(1, h * min_side // shorter)))
        image.load()
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:
            pass
        if image.mode.startswith("I") or image.mode == "F":
            image = _to_8bit_gray(image)
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info)
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return image.convert("RGB")


def decode_side(preprocess):
    """The shorter side that JPEGs may be decoded down to for ``preprocess``, or None to decode in full.

    Twice the side of what ``preprocess`` hands the encoder, so that its own
    resize still averages over two or more decoded pixels a side: measured on
    22 photographs (2,560-5,120 px wide), the EfficientNet-Lite0 features of
    reduced and full decodes had cosine similarity ≥ 0.9967 (mean 0.9993).
    Found by preprocessing two blank images of different shapes: if their
    outputs differ in size, the encoder sees the image at its own size, and
    nothing is reduced.
    """
    shapes = set()
    try:
        for size in ((640, 480), (480, 800)):
            tensor = preprocess(Image.new("RGB", size, (127, 127, 127)))
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3:
                return None
            shapes.add(tuple(tensor.shape[-2:]))
    except Exception:  # an unusual preprocess: no reduction, the safe choice
        return None
    if len(shapes) != 1:
        return None
    return 2 * max(shapes.pop())


def _to_8bit_gray(image):
    """16-bit, 32-bit integer or float single-channel image -> 8-bit "L" (PIL would clip these at 255)."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = array.astype(np.float32) / 257.0
    else:
        array = array.astype(np.float64)
        finite = np.isfinite(array)
        lo, hi = (array[finite].min(), array[finite].max()) if finite.any() else (0.0, 0.0)
        if 0 <= lo and hi <= 255:
            scaled = array
        else:
            scaled = (array - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(array)
        scaled = np.where(finite, scaled, 0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def failure_reason(exc):
    """Return ``(reason, content)``: a short reason, and whether it comes from the file's bytes.

    Failures that come from the bytes (not an image, truncated, corrupt) are
    remembered in the cache until the file changes; the others (missing file,
    permissions, ...) are retried on the next run.
    """
    if isinstance(exc, FileNotFoundError):
        return "file not found", False
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file", False
    if isinstance(exc, PermissionError):
        return "permission denied", False
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image (PIL cannot identify the file)", True
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large ({short_error(exc)})", False
    text = short_error(exc)
    if "truncated" in text.lower():
        return f"truncated image ({text})", True
    if isinstance(exc, (SyntaxError, ValueError, EOFError)) or (
            isinstance(exc, OSError) and getattr(exc, "errno", None) is None):
        return f"corrupt or unsupported image ({type(exc).__name__}: {text})", True
    return f"cannot read image ({type(exc).__name__}: {text})", False


class ImageDataset(torch.utils.data.Dataset):
    """Images at ``paths``; item i is ``(position, tensor, None)`` or ``(position, None, (reason, content))``.

    Failures are returned, not raised or printed, so that they reach the main
    process from DataLoader workers.
    """

    def __init__(self, paths, positions, preprocess, min_side=None):
        self.paths = paths
        self.positions = positions
        self.preprocess = preprocess
        self.min_side = min_side

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        position = self.positions[i]
        try:
            tensor = self.preprocess(_open_rgb(self.paths[i], self.min_side))
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3:
                return position, None, (f"preprocessing gave {type(tensor).__name__}, not a CHW tensor", False)
            return position, tensor.float(), None
        except Exception as exc:  # never let one bad file stop the run
            return position, None, failure_reason(exc)


def collate_images(items):
    """Stack the images that loaded; pass failures through as (position, (reason, content))."""
    positions = [p for p, t, _ in items if t is not None]
    tensors = [t for _, t, _ in items if t is not None]
    failures = [(p, reason) for p, t, reason in items if t is None]
    batch = torch.stack(tensors) if tensors else None
    return positions, batch, failures
