"""One run on a GPU machine that measures what the README says about GPUs (well under 10 minutes).

1. Embedding on the GPU: ``--images`` real images (the demo's Fashion-MNIST sample, or scikit-learn's digits)
   written as PNG files, embedded with ``embed_images`` (default encoder, cache off) in fp32 (what ``auto``
   means) and in bf16; images/s of each, and the cosine between the two features of each image.
2. ActiveFT at ImageNet-1k size: N = 1,281,167 × 384 clustered unit features (seeded), B = 1% and 5%, 100 and
   300 iterations, the ``bounded`` and the ``dense`` assignment: time and peak GPU memory of each, and whether
   two runs with the same seed give the same selection.

Prints a Markdown section and writes it to ``--out`` (default ``$OUT/gpu_check.md`` when ``$OUT`` is set, else
``bench/gpu_check.md``); every step is timed and a step that fails is reported, not fatal.  ``--quick``: small
sizes, to check the script itself on a CPU.

    python bench/gpu_check.py                      # on the GPU machine
    python bench/gpu_check.py --quick --device cpu # the script's own check, anywhere
"""

import argparse
import datetime
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from activeft_label.embeddings import embed_images  # noqa: E402
from activeft_label.errors import InputError  # noqa: E402
from activeft_label.files.demo import demo_images, write_pngs  # noqa: E402
from activeft_label.selection.activeft import centroids_to_samples, optimize_centroids  # noqa: E402

IMAGENET = 1_281_167


def clustered(n, dim, seed, device, clusters=1000):
    """Seeded unit features around ``clusters`` centres (built on the device in chunks)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(clusters, dim, generator=generator), dim=1)
    out = torch.empty(n, dim, device=device)
    for start in range(0, n, 200_000):
        count = min(200_000, n - start)
        which = torch.randint(clusters, (count,), generator=generator)
        rows = centres[which] + 0.35 * torch.randn(count, dim, generator=generator) / dim ** 0.5
        out[start:start + count] = torch.nn.functional.normalize(rows, dim=1).to(device)
    return out


def gpu_name(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
    return str(device)


def peak_gib(device):
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def embedding_rows(device, count):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images, _, _, source = demo_images(count, seed=0)
        paths = [str(p) for p in write_pngs(images, os.path.join(tmp, "images"))]
        features = {}
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            started = time.perf_counter()
            try:
                result = embed_images(paths, device=str(device), cache_dir=False, progress=False,
                                      precision=precision, batch_size=128)
            except InputError as exc:          # a device without native bf16 says so
                rows.append(f"| {precision} | refused: {exc} |")
                continue
            wall = time.perf_counter() - started
            features.setdefault(result.precision, result.features)
            rows.append(f"| {precision} | {len(paths) / wall:.0f} |")
        note = ""
        if len(features) == 2:
            a, b = features["fp32"], features[[k for k in features if k != "fp32"][0]]
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            note = f"fp32 against bf16: cosine min {cosine.min():.4f}, mean {cosine.mean():.5f}."
        else:
            note = "bf16 did not run here."
    return [f"Embedding {count} PNG images of {source} (efficientnet-lite0, batch 128, cache off; each precision "
            f"twice, alternating, first runs include the model's load and warm-up):", "",
            "| precision | images/s |", "|---|---|", *rows, "", note, ""]


def activeft_rows(device, n, budgets, iteration_counts):
    lines = [f"ActiveFT on {n:,} × 384 clustered unit features (released loss, τ = 0.07, lr = 1e-3; time includes "
             f"the final mapping to samples):", "",
             "| B | iterations | assignment | seconds | peak GPU memory (GiB) | same selection, two runs |",
             "|---|---|---|---|---|---|"]
    points = clustered(n, 384, 0, device)
    for fraction in budgets:
        budget = max(1, round(n * fraction))
        for iterations in iteration_counts:
            for assignment in ("bounded", "dense"):
                try:
                    picks, seconds, peak = [], [], float("nan") if device.type != "cuda" else 0.0
                    for _ in range(2 if iterations == iteration_counts[0] else 1):
                        reset_peak(device)
                        started = time.perf_counter()
                        theta, _ = optimize_centroids(points, budget, iterations=iterations, seed=0,
                                                      assignment=assignment)
                        picked = centroids_to_samples(points, theta)
                        sync(device)
                        seconds.append(time.perf_counter() - started)
                        peak = max(peak, peak_gib(device))
                        picks.append(torch.sort(picked)[0].cpu())
                    same = "yes" if len(picks) == 1 or torch.equal(picks[0], picks[1]) else "NO"
                    same = same if len(picks) == 2 else "(one run)"
                    lines.append(f"| {budget:,} ({fraction * 100:g}%) | {iterations} | {assignment} | "
                                 f"{' / '.join(f'{s:.1f}' for s in seconds)} | {peak:.1f} | {same} |")
                except Exception as exc:   # noqa: BLE001 - report and go on: one run of this script must give all
                    lines.append(f"| {budget:,} ({fraction * 100:g}%) | {iterations} | {assignment} | failed: "
                                 f"{type(exc).__name__}: {str(exc)[:120]} | | |")
                    traceback.print_exc()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                print(lines[-1], flush=True)
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="small sizes (a check of the script itself)")
    default_out = os.path.join(os.environ["OUT"], "gpu_check.md") if os.environ.get("OUT") else \
        os.path.join(HERE, "gpu_check.md")
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args()
    device = torch.device(args.device)
    started = time.perf_counter()
    n, images, iteration_counts = (20_000, 64, (5, 10)) if args.quick else (IMAGENET, args.images, (100, 300))
    lines = [f"## GPU check — {datetime.date.today()}", "",
             f"Device: {gpu_name(device)}; torch {torch.__version__}; "
             f"command `python bench/gpu_check.py{' --quick' if args.quick else ''}`.", ""]
    for part in (lambda: embedding_rows(device, images),
                 lambda: activeft_rows(device, n, (0.01, 0.05), iteration_counts)):
        try:
            lines += part()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            lines += [f"(failed: {type(exc).__name__}: {str(exc)[:300]})", ""]
        print("\n".join(lines), flush=True)
    lines.append(f"Total {(time.perf_counter() - started) / 60:.1f} min.")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
