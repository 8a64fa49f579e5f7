"""Keep a CPU encoder's large activations in the heap while it runs (glibc only).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed, and it trims the
heap whenever more than its trim threshold is free at the top.  A CNN forward
pass on a batch allocates and frees activations of tens of MiB per layer, so
on the CPU every batch paid for page faults on freshly mapped memory: with
EfficientNet-Lite0 at batch 32 the kernel's share (system time) was larger
than the model's own (user time), and embedding ran 3× slower than with both
thresholds raised, which costs 0.27 GiB more peak memory (``bench/RESULTS.md``,
2026-12-01; ``bench/embedding_speed.py``).

:func:`large_blocks_stay_in_heap` raises both thresholds for the duration of
a block, then sets them to the values glibc's own dynamic rule reaches for
large blocks (32 MiB, and twice that for trimming) and returns the freed
memory to the system with ``malloc_trim``.  Elsewhere (other C libraries,
other systems) it does nothing.

glibc's thresholds are process-wide and cannot be read back, so they cannot
be restored: the block changes them only inside
:func:`activeft_label.devices.process_tuning`, which the ``activeft`` command
line enters for its own process.  A library call (``embed_images``, the
connectors, the FiftyOne App's operators, which run inside the App server's
process) leaves glibc's settings as it found them, and embeds on the CPU at
glibc's default speed.  :func:`times_applied` tells how often this process's
thresholds were set here (0: never, glibc's own settings).
"""

import contextlib
import ctypes
import ctypes.util
import functools
import platform
import threading

from ..devices import process_tuning_enabled

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_WHILE_RUNNING = 1 << 30          # bytes: blocks below this come from the heap (a batch's activations do)
_AFTERWARDS = 32 << 20            # glibc's largest dynamic mmap threshold (64-bit); trim threshold twice that


@functools.lru_cache(maxsize=1)
def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


_lock = threading.Lock()
_depth = 0                        # blocks open now: only the outermost one sets and restores the thresholds
_applied = 0                      # times the outermost block raised the thresholds in this process


def times_applied():
    """How many times this process's malloc thresholds were raised here (0: glibc's settings never touched)."""
    return _applied


@contextlib.contextmanager
def large_blocks_stay_in_heap(enabled=True):
    """Within the block, large allocations come from the heap and freed memory stays there (glibc).

    Only inside :func:`activeft_label.devices.process_tuning` (the command
    line's process); elsewhere, and with ``enabled=False``, it does nothing.
    Blocks nest: a caller that embeds in several calls (to report progress)
    opens one around them all, so the heap is not trimmed between calls.
    """
    global _depth, _applied
    libc = _glibc() if enabled and process_tuning_enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _applied += 1
            libc.mallopt(_M_MMAP_THRESHOLD, _WHILE_RUNNING)
            libc.mallopt(_M_TRIM_THRESHOLD, _WHILE_RUNNING)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTERWARDS)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _AFTERWARDS)
                libc.malloc_trim(0)
