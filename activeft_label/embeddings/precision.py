"""Which number format the encoder runs in: fp32, or bf16 autocast where the hardware computes it natively.

Measured here (``bench/RESULTS.md`` and ``bench/QUALITY.md``, 2026-12-01, an
AMD EPYC with AVX-512 BF16): EfficientNet-Lite0 in bf16 autocast runs the
whole ``activeft embed`` 1.47× as fast as fp32 (the encoder alone 2.8×), and ActiveFT's selection
scores the same (linear probe on Fashion-MNIST, ten seeds, 0.5/1/2 %: within
0.5 points, well inside the seeds' spread).  But the features themselves move:
per image the cosine to fp32 is 0.9964 on average and as low as 0.944, and
each image's 10 nearest neighbours agree only 87 % of the time.  So:

* ``"auto"`` (the default) is **fp32** on every device: features stay what
  they were (the bar set for the default was min cosine 0.999), until a bf16
  variant meets it;
* ``"bf16"`` is the fast path, opt-in, where the device computes bf16 natively:
  a CPU that reports ``avx512_bf16`` or ``amx_bf16`` (Linux ``/proc/cpuinfo``),
  a CUDA GPU for which ``torch.cuda.is_bf16_supported()``.  Elsewhere it is
  refused with the reason before any image is read: emulated bf16 is several
  times *slower* than fp32 (the AVX2-only CPUs seen here);
* ``"fp32"``: as ``auto`` today, whatever a later release makes ``auto`` mean.

Features computed in bf16 differ from fp32 ones, so the embedding cache keys
every row by the precision it was computed in.
"""

import functools

from ..errors import InputError

#: What ``precision=`` accepts.
PRECISIONS = ("auto", "fp32", "bf16")
#: The CPU flags that mean bf16 dot products in hardware (AVX-512 BF16, Intel AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags():
    """The CPU's feature flags as Linux reports them (a frozenset), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def native_bf16(device, flags=None):
    """``(True, why)`` when ``device`` computes bf16 natively, else ``(False, why)``.

    ``device`` is a ``torch.device``; ``flags`` (CPU flags, for tests)
    defaults to :func:`cpu_flags`.
    """
    kind = getattr(device, "type", str(device))
    if kind == "cpu":
        flags = cpu_flags() if flags is None else frozenset(flags)
        if flags is None:
            return False, "this system does not report the CPU's features"
        found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has no bf16 instructions (neither avx512_bf16 nor amx_bf16)"
    if kind == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} does not support bf16"
    return False, f"bf16 autocast is not used on {kind} devices"


def check_precision(precision):
    """Refuse anything but one of :data:`PRECISIONS` (before any work)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision, device, flags=None):
    """``"fp32"`` or ``"bf16"``: what ``precision`` (one of :data:`PRECISIONS`) means on ``device``.

    ``auto`` is fp32 (see the module docstring for the measurements behind
    it).  An explicit ``"bf16"`` where the device lacks native bf16
    (:func:`native_bf16`) raises :class:`InputError` naming why.
    """
    check_precision(precision)
    if precision in ("auto", "fp32"):
        return "fp32"
    native, why = native_bf16(device, flags)
    if not native:
        raise InputError(f"--precision bf16 is not available here: {why}, so bf16 would run emulated, slower "
                         f"than fp32; use --precision fp32 (the default)")
    return "bf16"


__all__ = ["PRECISIONS", "BF16_CPU_FLAGS", "cpu_flags", "native_bf16", "check_precision", "resolve_precision"]
