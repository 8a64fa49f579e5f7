"""What every face of the command line shares: option groups, error handling, output.

Each ``*_options`` decorator adds one group of options to a command; the
error decorators turn the library's errors into one line and an exit status
(2 for input errors), without a traceback and without the API key.
"""

import functools
import os

import click

from ..errors import ActiveFTError, InputError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Failure(click.ClickException):
    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def friendly_errors(command):
    """Turn ActiveFTError into a one-line message and its exit status (2 for input errors)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ActiveFTError as exc:
            raise _Failure(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _Failure("interrupted; nothing was written", 130) from None

    return wrapper


def own_process():
    """Tune this process for speed until the command ends: the command line owns its process.

    Called once by the root group ``activeft`` (so by every command, also
    through ``python -m activeft_label.cli``): it opens
    :func:`activeft_label.devices.process_tuning` on click's context, which
    closes it when the command ends.  Inside it, glibc's malloc thresholds are
    raised while a CPU encoder embeds, and small CPU selections run on one
    torch thread.  Library calls made outside a command (the Python API, the
    FiftyOne App's operators) leave both as they found them.  Cheap: torch is
    not imported here.
    """
    from ..devices import process_tuning

    click.get_current_context().with_resource(process_tuning())


def say(message="", err=False):
    click.echo(message, err=err)


def _gathered(command, keyword, build):
    """Wrap ``command`` so that the parameters ``build`` takes reach it as one object, ``keyword``.

    ``build`` is called with those parameters (popped from the command's
    keyword arguments) when the command runs, so the objects' modules are
    imported only then and ``activeft --help`` stays fast.
    """
    import inspect

    names = list(inspect.signature(build).parameters)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        kwargs[keyword] = build(**{name: kwargs.pop(name) for name in names})
        return command(*args, **kwargs)

    return wrapper


def _embedding(model, pretrained, batch_size, workers, cache_dir, no_cache, precision, ray_address):
    from ..embeddings.options import EmbeddingOptions

    return EmbeddingOptions(model=model, pretrained=pretrained, batch_size=batch_size, num_workers=workers,
                            cache_dir=False if no_cache else cache_dir, precision=precision,
                            ray_address=ray_address or None)


def _selection(method, loss, iterations, temperature, lr, seed, center, cores, update):
    from ..selection import ACTIVEFT_METHODS
    from ..selection.options import SelectionOptions

    if cores is not None and method != "bilaf":
        raise click.UsageError(f"--cores applies to --method bilaf only (got --method {method})")
    if update is not None and method not in ACTIVEFT_METHODS:
        raise click.UsageError(f"--update applies to --method {' and '.join(ACTIVEFT_METHODS)} only "
                               f"(got --method {method})")
    return SelectionOptions(method=method, loss=loss, iterations=iterations, temperature=temperature, lr=lr,
                            seed=seed, center=center, cores=cores, update=update)


def embedding_kwargs(embedding, embeddings_field):
    """The connectors' embedding keyword arguments: none of the encoder's when a vector field is read instead."""
    kwargs = embedding.as_kwargs()
    if embeddings_field:
        kwargs.update(model=None, pretrained=None)
    return kwargs


def model_options(command):
    """--model, --pretrained and the image-loading options of commands that embed.

    The command receives them as one :class:`~activeft_label.embeddings.options.EmbeddingOptions`,
    keyword ``embedding``.
    """
    command = _gathered(command, "embedding", _embedding)
    options = [
        click.option("--model", "-m", default="efficientnet-lite0", show_default=True, envvar="ACTIVEFT_MODEL",
                     help="Encoder for image sources: 'efficientnet-lite0' (offline, ImageNet weights) or any "
                          "open_clip model name (e.g. ViT-B-32). Ignored for features files. [env: ACTIVEFT_MODEL]"),
        click.option("--pretrained", envvar="ACTIVEFT_PRETRAINED", metavar="TAG|PATH",
                     help="open_clip weights: a pretrained tag (e.g. laion2b_s34b_b79k, needs internet the first "
                          "time) or a local checkpoint file. [env: ACTIVEFT_PRETRAINED]"),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1),
                     help="Images per encoder batch."),
        click.option("--workers", type=click.IntRange(0), default=None,
                     help="Image loading processes (default: up to 4, none for small pools)."),
        click.option("--cache-dir", envvar="ACTIVEFT_CACHE_DIR", type=click.Path(file_okay=False),
                     help="Where embeddings are cached (default ~/.cache/activeft-label). [env: ACTIVEFT_CACHE_DIR]"),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embeddings cache."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                     envvar="ACTIVEFT_PRECISION",
                     help="The encoder's number format. auto: fp32 (today). bf16: autocast, about 1.5x as fast "
                          "where the hardware computes bf16 natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs), "
                          "refused elsewhere; the selection scored the same here, but features move (cosine to "
                          "fp32 0.944-1, mean 0.996) and are cached apart. [env: ACTIVEFT_PRECISION]"),
        click.option("--ray", "ray_address", envvar="ACTIVEFT_RAY_ADDRESS", metavar="ADDRESS",
                     help="Embed on a Ray cluster: HOST:PORT (what `ray start --head` printed), ray://HOST:PORT, or "
                          "auto (the cluster started on this machine). The workers read the images at the same "
                          "paths (a shared file system); the cache stays here. Needs "
                          "pip install 'activeft-label[ray]'. [env: ACTIVEFT_RAY_ADDRESS]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def common_options(command):
    """--device and --quiet."""
    options = [
        click.option("--device", default="auto", show_default=True, envvar="ACTIVEFT_DEVICE",
                     help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps. [env: ACTIVEFT_DEVICE]"),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def selection_options(command=None, *, budget_required=True, budget_help=None):
    """--budget and the options of the selection itself, shared by every command that selects.

    The command receives ``budget`` and one
    :class:`~activeft_label.selection.options.SelectionOptions`, keyword
    ``selection``.  Use as ``@selection_options``, or
    ``@selection_options(budget_required=False, budget_help=...)``.
    """
    if command is None:
        return lambda cmd: selection_options(cmd, budget_required=budget_required, budget_help=budget_help)
    from ..selection import DEFAULT_LOSS, DEFAULT_UPDATE, LOSS_FORMS, METHODS, UPDATE_FORMS

    command = _gathered(command, "selection", _selection)

    options = [
        click.option("--budget", "-b", required=budget_required, metavar="N|P%",
                     help=budget_help or "How many items to select: a count (300) or a percentage of the pool (1%)."),
        click.option("--method", type=click.Choice(METHODS), default="activeft", show_default=True,
                     help="activeft, bilaf (ActiveFT cores plus boundary samples), or a baseline to compare with."),
        click.option("--cores", metavar="K|P%",
                     help="bilaf: core samples chosen by ActiveFT, a count (50) or a percentage of the pool "
                          "(0.5%); the rest of the budget goes to boundary samples. Default: 0.5% of the pool, "
                          "at most half the budget."),
        click.option("--loss", type=click.Choice(LOSS_FORMS), default=DEFAULT_LOSS, show_default=True,
                     help="ActiveFT loss form: 'released' (the authors' code) or 'paper' (Algorithm 1)."),
        click.option("--update", type=click.Choice(UPDATE_FORMS), default=None,
                     help=f"ActiveFT (and bilaf's cores): '{DEFAULT_UPDATE}' (default) renormalises θ after each "
                          f"step as Algorithm 1; 'released' keeps θ raw and normalises it inside the loss, as the "
                          f"authors' code."),
        click.option("--iters", "iterations", type=click.IntRange(0), default=300, show_default=True,
                     help="ActiveFT optimisation steps (Adam)."),
        click.option("--temperature", type=float, default=0.07, show_default=True, help="ActiveFT temperature τ."),
        click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate."),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Random seed: same seed and device give the same selection."),
        click.option("--center/--no-center", default=False, show_default=True,
                     help="Compare items after subtracting the pool's mean direction (every method). Pretrained "
                          "features share a common direction; centring spreads them (see bench/QUALITY.md)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def read_lines(path):
    """The non-empty, non-comment lines of a UTF-8 text file, stripped."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a UTF-8 text file; give one id or path per line") from None


def report_skipped(skipped):
    """Tell stderr which items were skipped and why (the first five)."""
    if not skipped:
        return
    shown = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    say(f"Skipped {len(skipped)} unreadable item(s): {shown}{more}", err=True)


def server_options(command):
    """--url and --api-key, with their environment defaults."""
    options = [
        click.option("--url", envvar="LABEL_STUDIO_URL", show_envvar=True, metavar="URL",
                     help="Label Studio server, e.g. http://localhost:8080."),
        click.option("--api-key", envvar="LABEL_STUDIO_API_KEY", show_envvar=True, metavar="KEY",
                     help="A personal access token (Account & Settings > Personal Access Token) or a legacy "
                          "token. Never printed. Prefer the environment variable: options show up in the process "
                          "list."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def guard_secrets(command):
    """Turn SDK/HTTP errors that escaped the connector into one line without the API key."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ActiveFTError, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - only SDK and transport errors are translated
            module = type(exc).__module__ or ""
            if not (module.startswith("label_studio_sdk") or module.startswith("httpx")):
                raise
            message = f"{type(exc).__name__}: {exc}"
            key = kwargs.get("api_key") or os.environ.get("LABEL_STUDIO_API_KEY") or ""
            if len(key) >= 8:
                message = message.replace(key, "***")
            raise ActiveFTError(f"Label Studio request failed: {message[:500]}") from None

    return wrapper
