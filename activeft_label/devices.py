"""Which torch device runs the work, and how many CPU threads a small problem gets.

Shared by :mod:`activeft_label.selection` and :mod:`activeft_label.embeddings`
(and checked up front by every face, before anything is read or written).
"""

import contextlib

import torch

from .errors import InputError

__all__ = ["resolve_device", "threads_for", "SMALL_STEP_WORK"]


#: Below this many multiply-adds per optimisation step (N × centers × C), CPU runs use one torch thread.
SMALL_STEP_WORK = 1e9


@contextlib.contextmanager
def threads_for(device, step_work):
    """One torch thread for small CPU problems, restored afterwards.

    Small steps are dominated by per-call overhead, and on a busy machine two
    threads oversubscribe the cores: measured here (2 cores, another 2-thread
    job running), 100 steps took 4.1 s with one thread and 6.6 s with two at
    N = 2,000, B = 20; 5.0 s vs 11.9 s at N = 10,000, B = 100.  The rule
    depends on the problem size only, so a given problem always runs with
    the same number of threads (same floating-point results).
    """
    if device.type != "cpu" or step_work >= SMALL_STEP_WORK or torch.get_num_threads() == 1:
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
