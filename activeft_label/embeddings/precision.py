"""Which number format the encoder runs in: fp32, or bf16 autocast where the hardware computes it natively.

Measured (``bench/RESULTS.md``, 2026-12-01): on a CPU with AVX-512 BF16 (an
AMD EPYC here; the Intel Xeons seen here also have AMX) EfficientNet-Lite0
in bf16 autocast and ``channels_last`` runs ~2.8× the images per second of
fp32, with every feature within cosine 0.9996 of its fp32 value; on a CPU
without bf16 instructions bf16 is emulated and several times *slower* than
fp32.  So ``auto`` asks the hardware, never assumes:

* CPU: bf16 when the CPU reports ``avx512_bf16`` or ``amx_bf16`` (Linux
  ``/proc/cpuinfo``; elsewhere the flags are unknown and ``auto`` means fp32);
* CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (Ampere and newer);
* MPS and anything else: fp32.

An explicit ``"bf16"`` where the hardware lacks it is refused with the reason,
before any image is read: it would be slower and less exact than fp32.

Features computed in bf16 differ slightly from fp32 ones, so the embedding
cache keys every row by the precision it was computed in.
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

    ``auto`` is bf16 where :func:`native_bf16` says so, else fp32.  An explicit
    ``"bf16"`` where the device lacks it raises :class:`InputError` naming why.
    """
    check_precision(precision)
    if precision == "fp32":
        return "fp32"
    native, why = native_bf16(device, flags)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        raise InputError(f"--precision bf16 is not available here: {why}, so bf16 would run emulated, slower "
                         f"and less exact than fp32; use --precision auto or fp32")
    return "bf16"


__all__ = ["PRECISIONS", "BF16_CPU_FLAGS", "cpu_flags", "native_bf16", "check_precision", "resolve_precision"]
