"""Which torch device runs the work, how many CPU threads a small problem gets, and who may tune the process.

Shared by :mod:`activeft_label.selection` and :mod:`activeft_label.embeddings`
(and checked up front by every face, before anything is read or written).

Process-wide state (glibc's malloc thresholds, torch's thread count) belongs
to whoever owns the process.  A library call (``select``, ``embed_images``,
the connectors, the FiftyOne App's operators, which run inside the App
server's own process) leaves it as it found it.  Only inside
:func:`process_tuning` may the library change it for speed: the ``activeft``
command line enters that block once per command, for its own process, and a
script that owns its process may do the same.  This module imports torch only
when a function needs it, so the command line's switch costs nothing.
"""

import contextlib
import threading

from .errors import InputError

__all__ = ["resolve_device", "threads_for", "process_tuning", "process_tuning_enabled", "SMALL_STEP_WORK"]


#: Below this many multiply-adds per optimisation step (N × centers × C), CPU runs use one torch thread.
SMALL_STEP_WORK = 1e9

_tuning_lock = threading.Lock()
_tuning_depth = 0                 # process_tuning blocks open now (they nest)


@contextlib.contextmanager
def process_tuning():
    """Within the block, the library may tune process-wide state for speed; outside it, it never does.

    What it then tunes: glibc's malloc thresholds while a CPU encoder embeds
    (:mod:`activeft_label.embeddings.heap`: 3× faster on glibc; these cannot be
    read back, so they are never touched outside this block), and one torch
    thread for small CPU selections (:func:`threads_for`).  The ``activeft``
    command line enters it for every command (``cli/options.py``,
    ``own_process``); enter it yourself only in a process that is yours alone
    (a script, not a server that runs other people's code in other threads).
    Blocks nest; entering it changes nothing by itself.
    """
    global _tuning_depth
    with _tuning_lock:
        _tuning_depth += 1
    try:
        yield
    finally:
        with _tuning_lock:
            _tuning_depth -= 1


def process_tuning_enabled():
    """Whether a :func:`process_tuning` block is open in this process (the command line runs in one)."""
    return _tuning_depth > 0


@contextlib.contextmanager
def threads_for(device, step_work):
    """One torch thread for small CPU problems, restored afterwards; only inside :func:`process_tuning`.

    Small steps are dominated by per-call overhead, and on a busy machine two
    threads oversubscribe the cores: measured here (2 cores, another 2-thread
    job running), 100 steps took 4.1 s with one thread and 6.6 s with two at
    N = 2,000, B = 20; 5.0 s vs 11.9 s at N = 10,000, B = 100.  Within the
    command line the rule depends on the problem size only, so a given
    problem always runs there with the same number of threads (same
    floating-point results).  Outside :func:`process_tuning` (a library call)
    the thread count is never changed: torch's setting is process-wide, and in
    a host that runs other work in other threads (the FiftyOne App server)
    changing it and setting it back would race with that work.  A library
    call therefore runs with the caller's thread count, and its results match
    the command line's bit for bit when that count is the one the rule picks.
    """
    import torch

    if (not process_tuning_enabled() or device.type != "cpu" or step_work >= SMALL_STEP_WORK
            or torch.get_num_threads() == 1):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device="auto"):
    """Return a :class:`torch.device`; ``"auto"`` prefers cuda, then mps, then cpu."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        # torch knows more device types (meta, xla, ...) that cannot hold or compute a selection here.
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {device!r} was asked for but MPS is not available; use --device cpu or auto")
    return dev
