"""Embedding on a Ray cluster: decoding on CPU tasks, the encoder in a pool of actors, rows back to the cache.

:func:`embed_images` hands the images its cache does not hold to
:func:`embed_on_ray` when it is given ``ray_address``.  The pipeline is a Ray
Data one::

    from_items(positions, paths)
      → map_batches(decode_images)               CPU tasks: read, decode, preprocess
      → map_batches(EncodeImages, concurrency=K)  actors: the encoder, one GPU each where the cluster has GPUs,
                                                  a fraction of a CPU otherwise
      → iter_batches() on the driver             rows stored in the on-disk cache as they arrive

* The workers read the image files where the driver sees them: the paths must
  name the same files on every node (a shared file system).  Or, given a
  ``fetch`` callable, they fetch each image themselves (a URL, say) a few at
  a time and decode it in memory: nothing passes through the driver.  The
  callable travels pickled in the decoding stage's keyword arguments, which
  Ray Data keeps in the object store (never in a log), so a credential it
  holds stays out of Ray's log files.
* Actors take a fraction of a CPU (``ACTOR_CPUS``): actors that hold every CPU
  starve the decoding tasks and the job hangs (seen on this project's
  two-node test cluster).
* Ray Data retries a task whose node died and restarts a lost actor, without
  limit (its defaults, kept here): a node killed mid-job costs its batches'
  time, not the run; the actors' calls are retried on ``ActorUnavailableError``
  too, which a node that vanished answers while the cluster has not yet
  declared it dead.  Rows are stored as they arrive, keyed by file, so a retried batch
  overwrites its own rows and nothing is stored twice; an interrupted job
  keeps every row it stored, and the re-run embeds only the rest.
* A decode failure comes back as a reason, exactly as in the local path.
* The driver's connection is left as found: a process that had called
  ``ray.init`` itself keeps its connection; one opened here is closed again.
"""

import concurrent.futures
import io
import socket

import numpy as np

from ..errors import ActiveFTError, InputError

#: CPUs each encoder actor asks for when the cluster has no GPU (a fraction: see the module docstring).
ACTOR_CPUS = 0.5
#: Seconds allowed for a TCP connection to the cluster's address before Ray is asked to connect.
REACH_TIMEOUT = 3.0
#: Images a decoding task fetches at once with ``fetch`` (waiting on the network, not on its CPU).
FETCH_THREADS = 8
#: Starts the reason of an image that ``fetch`` could not get, as it travels back and is remembered in the cache
#: (a NUL byte: no other reason holds one), so that the next run asks for it again on the driver.
UNFETCHED = "\0unfetched\0"


def check_address(address):
    """``address`` as Ray takes it (``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``); usage errors raise.

    Returns ``(address, (host, port) or None)``: what to reach before connecting.
    """
    if not isinstance(address, str) or not address.strip():
        raise InputError("the Ray address must be 'auto', HOST:PORT or ray://HOST:PORT")
    address = address.strip()
    if address == "auto":
        return address, None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise InputError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379, the port `ray start "
                         f"--head` printed), ray://HOST:PORT or auto")
    return address, (host.strip("[]"), int(port))


def _reachable_or_fail(address, where):
    try:
        with socket.create_connection(where, timeout=REACH_TIMEOUT):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise ActiveFTError(f"cannot reach a Ray cluster at {address} ({reason}); start one with `ray start --head "
                        f"--port {where[1]}` on that machine, or pass the address `ray start` printed")


def connect(address):
    """Connect the driver to the cluster at ``address``; returns whether this call opened the connection."""
    try:
        import ray
    except ImportError:
        raise ActiveFTError("embedding on a Ray cluster needs Ray: pip install 'activeft-label[ray]'") from None
    address, where = check_address(address)
    if ray.is_initialized():
        return False
    if where is not None:
        _reachable_or_fail(address, where)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="error", configure_logging=False)
    except ConnectionError as exc:
        raise ActiveFTError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0][:300]}; "
                            f"start one with `ray start --head`, or pass the address it printed") from None
    return True


def fetch_all(fetch, sources):
    """``[fetch(source) for source in sources]``, a few at a time (:data:`FETCH_THREADS`).

    Each answer is ``(bytes, None)`` or ``(None, reason)``; an answer of
    another form, or an exception, becomes a reason.
    """
    def one(source):
        try:
            content, reason = fetch(source)
        except Exception as exc:  # a fetch that raises: that image's reason, not the job's end
            return None, f"cannot fetch the image ({type(exc).__name__})"
        if reason is not None or not isinstance(content, (bytes, bytearray, memoryview)):
            return None, str(reason or "no image bytes")
        return bytes(content), None

    if not sources:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(sources))) as pool:
        return list(pool.map(one, sources))


def decode_images(batch, preprocess, min_side, fetch=None):
    """Ray Data batch {position, path} → {position, image (N×C×H×W float32), reason, content}.

    With ``fetch``, each path is handed to ``fetch(path)``, which returns
    ``(bytes, None)`` or ``(None, reason)``; the bytes are decoded as the
    file would be.
    """
    from .images import ImageDataset

    sources = list(batch["path"])
    unfetched = {}
    if fetch is not None:
        for i, (content, reason) in enumerate(fetch_all(fetch, sources)):
            if reason is not None:
                unfetched[i] = reason
            else:
                sources[i] = io.BytesIO(content)
    dataset = ImageDataset(sources, list(batch["position"]), preprocess, min_side=min_side)
    tensors, reasons, contents, shape = [], [], [], None
    for i in range(len(dataset)):
        if i in unfetched:
            tensors.append(None)
            reasons.append(UNFETCHED + unfetched[i])
            contents.append(False)
            continue
        _, tensor, failure = dataset[i]
        if tensor is not None:
            shape = tuple(tensor.shape)
            tensors.append(tensor.numpy())
            reasons.append("")
            contents.append(False)
        else:
            tensors.append(None)
            reasons.append(failure[0])
            contents.append(bool(failure[1]))
    shape = shape or (3, 1, 1)
    images = np.zeros((len(tensors),) + shape, dtype=np.float32)
    for i, tensor in enumerate(tensors):
        if tensor is not None:
            if tensor.shape != shape:
                reasons[i], contents[i] = f"preprocessing gave shape {tensor.shape}, others {shape}", False
            else:
                images[i] = tensor
    return {"position": np.asarray(batch["position"], dtype=np.int64), "image": images,
            "reason": np.asarray(reasons, dtype=object), "content": np.asarray(contents, dtype=bool)}


class EncodeImages:
    """A Ray Data actor: loads the encoder once, then embeds the decoded batches it is handed."""

    def __init__(self, spec, precision, use_gpu):
        import torch

        from ..devices import process_tuning
        from .encoders import load_resolved_encoder

        # Ray runs each actor in a worker process of its own, for this job alone: like the command line's
        # process, it may tune itself (glibc's heap around the CPU batches: 3x faster, heap.py).
        self._tuning = process_tuning()
        self._tuning.__enter__()
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.encoder = load_resolved_encoder(spec, device, precision)

    def __call__(self, batch):
        import torch

        from .heap import large_blocks_stay_in_heap

        ok = np.flatnonzero(np.asarray(batch["reason"]) == "")
        features = None
        if ok.size:
            with large_blocks_stay_in_heap(enabled=self.encoder.device.type == "cpu"):
                vectors = self.encoder.encode(torch.from_numpy(np.ascontiguousarray(batch["image"][ok]))).numpy()
            features = np.zeros((len(batch["position"]), vectors.shape[1]), dtype=np.float32)
            features[ok] = vectors
        else:
            features = np.zeros((len(batch["position"]), 1), dtype=np.float32)
        return {"position": batch["position"], "feature": features, "reason": batch["reason"],
                "content": batch["content"]}


def _cluster_gpus(ray):
    try:
        return int(ray.cluster_resources().get("GPU", 0))
    except Exception:
        return 0


def _cluster_nodes(ray):
    try:
        return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
    except Exception:
        return 1


def embed_on_ray(address, spec, preprocess, min_side, todo, *, precision, batch_size, on_rows, fetch=None):
    """Embed ``todo`` (list of (position, path)) on the cluster at ``address``.

    ``spec`` names the encoder (each actor loads it), ``preprocess`` and
    ``min_side`` are the decoding stage's, ``fetch`` (optional) how a worker
    gets an image's bytes from its path (see :func:`decode_images`).
    ``on_rows(rows)`` is called on the driver with each returned batch as a
    list of ``(position, vector or None, reason, content)``; returns the
    number of rows handled.
    """
    opened = connect(address)
    import ray

    context = ray.data.DataContext.get_current()
    saved_bars = context.enable_progress_bars
    context.enable_progress_bars = False        # one bar, the caller's, counting images
    saved_retries = context.actor_task_retry_on_errors
    context.actor_task_retry_on_errors = [ray.exceptions.ActorUnavailableError]
    done = 0
    try:
        gpus = _cluster_gpus(ray)
        actors = gpus if gpus else _cluster_nodes(ray)
        resources = {"num_gpus": 1} if gpus else {"num_cpus": ACTOR_CPUS}
        items = [{"position": int(p), "path": str(path)} for p, path in todo]
        blocks = max(1, min(len(items), 4 * actors, -(-len(items) // max(1, batch_size))))
        dataset = ray.data.from_items(items, override_num_blocks=blocks)
        dataset = dataset.map_batches(decode_images, batch_size=batch_size, batch_format="numpy",
                                      fn_kwargs={"preprocess": preprocess, "min_side": min_side, "fetch": fetch})
        dataset = dataset.map_batches(EncodeImages, batch_size=batch_size, batch_format="numpy",
                                      fn_constructor_kwargs={"spec": spec, "precision": precision,
                                                             "use_gpu": bool(gpus)},
                                      compute=ray.data.ActorPoolStrategy(size=actors), **resources)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                rows = []
                for position, feature, reason, content in zip(batch["position"], batch["feature"], batch["reason"],
                                                              batch["content"]):
                    rows.append((int(position), None if reason else np.array(feature, dtype=np.float32),
                                 str(reason), bool(content)))
                on_rows(rows)
                done += len(rows)
        except Exception as exc:
            if not type(exc).__module__.startswith("ray"):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            # A fetcher that holds a credential can blank it out of whatever the failure says.
            first = (fetch.scrub(first) if callable(getattr(fetch, "scrub", None)) else first)[:300]
            raise ActiveFTError(f"the Ray job failed after {done} of {len(todo)} images ({type(exc).__name__}: "
                                f"{first}); those are in the cache: run the same command again to embed the "
                                f"rest") from None
    finally:
        context.enable_progress_bars = saved_bars
        context.actor_task_retry_on_errors = saved_retries
        if opened:
            ray.shutdown()
    return done


__all__ = ["ACTOR_CPUS", "FETCH_THREADS", "UNFETCHED", "check_address", "connect", "decode_images", "EncodeImages",
           "embed_on_ray", "fetch_all"]
