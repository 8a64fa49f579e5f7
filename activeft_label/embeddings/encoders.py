"""Loading encoders: EfficientNet-Lite0 from its packages, open_clip models from tags or checkpoints, failing fast offline."""

import contextlib
import logging
import os
import pickle
import threading
import urllib.error
import urllib.request

import numpy as np
import torch
from PIL import Image

from ..errors import ActiveFTError, InputError
from .names import DEFAULT_MODEL, EFFNET_CODE_PACKAGE, import_open_clip, resolve_model
from .precision import check_precision, resolve_precision

#: Seconds allowed for checking whether the Hugging Face Hub answers.
_REACH_TIMEOUT = 2.5
_EFFNET_SIZE = 224
_EFFNET_DIM = 1280


class Encoder:
    """A loaded image encoder.

    Attributes: ``name`` (model name), ``weights`` (a string that identifies
    the weights: package version and file, an open_clip pretrained tag, or a
    checkpoint path with its size and mtime), ``dim`` (feature length),
    ``preprocess`` (PIL image -> CHW float tensor), ``device``, ``module``
    (the torch module, in eval mode), ``precision`` (``"fp32"`` or
    ``"bf16"``: the number format :meth:`encode` runs in unless told
    otherwise, see :mod:`.precision`) and ``channels_last`` (whether batches
    are laid out channels-last, the faster layout of convolutions on the CPU).
    """

    def __init__(self, name, weights, dim, preprocess, module, forward, device, *, precision="fp32",
                 channels_last=False):
        self.name = name
        self.weights = weights
        self.dim = int(dim)
        self.preprocess = preprocess
        self.module = module
        self.device = device
        self.precision = precision
        self.channels_last = bool(channels_last)
        self._forward = forward

    def encode(self, batch, precision=None):
        """Embed a batch (B×3×H×W float tensor); returns a (B, dim) float32 tensor on the CPU.

        ``precision`` (``"fp32"`` or ``"bf16"``, default :attr:`precision`):
        bf16 runs the model under ``torch.autocast``; the features come back
        as float32 either way.
        """
        if self.module.training:
            self.module.eval()
        precision = precision or self.precision
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = self._forward(batch)
        return out.float().cpu()

    def __repr__(self):
        return (f"Encoder(name={self.name!r}, weights={self.weights!r}, dim={self.dim}, device={str(self.device)!r}, "
                f"precision={self.precision!r})")


def load_encoder(model=DEFAULT_MODEL, pretrained=None, device="auto", precision="auto"):
    """Load an :class:`Encoder`.

    ``model`` is ``"efficientnet-lite0"`` (offline, the default) or a name from
    ``open_clip.list_models()``; for open_clip models ``pretrained`` is a
    pretrained tag or a local checkpoint path (required).  ``device`` is
    ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    or ``"mps"``.  ``precision`` is ``"auto"`` (bf16 autocast where the device
    computes bf16 natively, else fp32), ``"fp32"`` or ``"bf16"``; see
    :mod:`.precision`.

    Raises :class:`InputError` for an unknown model or tag, an explicit bf16
    the device cannot compute natively, a missing
    checkpoint file or one that does not fit the model, and
    :class:`ActiveFTError` when weights must be downloaded but the network
    cannot be reached, or a package is missing.
    """
    from ..devices import resolve_device

    check_precision(precision)
    spec = resolve_model(model, pretrained)
    dev = resolve_device(device)
    return load_resolved_encoder(spec, dev, resolve_precision(precision, dev))


def load_resolved_encoder(spec, device, precision="fp32"):
    """Load the encoder ``spec`` names on ``device`` (resolved), to run in ``precision`` (resolved)."""
    from ..devices import resolve_device

    dev = resolve_device(device)
    encoder = _load_effnet(spec, dev) if spec.kind == "effnet" else _load_open_clip(spec, dev)
    encoder.precision = precision
    return encoder


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
            f"the code of the default encoder {DEFAULT_MODEL} is missing; run `pip install {EFFNET_CODE_PACKAGE}`"
        ) from None
    net = EfficientNet.from_name(DEFAULT_MODEL)
    try:
        state = torch.load(spec.source, map_location="cpu", weights_only=True)
    except Exception:
        raise InputError(_not_a_checkpoint(spec.source, DEFAULT_MODEL)) from None
    try:
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise InputError(
            f"cannot load {DEFAULT_MODEL} weights from {spec.source}: {type(exc).__name__}: {short_error(exc)}"
        ) from None
    # Convolutions on the CPU run ~1.4x faster channels-last, in fp32 and more so in bf16 (bench/RESULTS.md,
    # 2026-12-01, on AMD and as issue #28 measured on Intel); on GPUs it is not measured, so left as it was.
    channels_last = device.type == "cpu"
    net.eval().to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)

    def forward(x):
        return net.extract_features(x).mean(dim=(2, 3))

    return Encoder(DEFAULT_MODEL, spec.weights, _EFFNET_DIM, _effnet_preprocess, net, forward, device,
                   channels_last=channels_last)


#: Where the readers of weight files live: an error raised in them means the file itself could not be read.
_READERS = (os.path.join("torch", "serialization.py"), os.path.join("torch", "_weights_only_unpickler.py"),
            os.path.join("numpy", "lib", ""), os.path.join("safetensors", ""))


def _unreadable_checkpoint(exc):
    """True when ``exc``, or what caused it, was raised reading a weights file, not fitting it to the model."""
    seen = 0
    while exc is not None and seen < 10:
        traceback = exc.__traceback__
        while traceback is not None:
            if any(reader in traceback.tb_frame.f_code.co_filename for reader in _READERS):
                return True
            traceback = traceback.tb_next
        text = str(exc)
        if isinstance(exc, pickle.UnpicklingError) or "pickle" in text or "weights_only" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _not_a_checkpoint(path, model):
    # Never torch's own text: it advises loading with weights_only=False, which runs code from the file.
    return (f"{path} is not a valid checkpoint for {model}: expected a PyTorch state dict of tensors, saved with "
            f"torch.save(model.state_dict(), path)")


def short_error(exc, limit=400):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _load_open_clip(spec, device):
    open_clip = import_open_clip()

    def create():
        return open_clip.create_model_and_transforms(spec.name, pretrained=spec.source, device=device)

    try:
        net, _, preprocess = _with_hub_fallback(create, spec)
    except ActiveFTError:
        raise
    except Exception as exc:
        if spec.is_tag:
            raise ActiveFTError(
                f"cannot load {spec.name} with pretrained tag {spec.source!r}: {type(exc).__name__}: {short_error(exc)}"
            ) from None
        if _unreadable_checkpoint(exc):
            raise InputError(_not_a_checkpoint(spec.source, spec.name)) from None
        raise InputError(
            f"cannot load checkpoint {spec.source} into {spec.name} (is it a checkpoint of that model?): "
            f"{type(exc).__name__}: {short_error(exc)}"
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
            raise ActiveFTError(f"downloading the {what} failed ({short_error(exc)}); {fixes}") from None
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
