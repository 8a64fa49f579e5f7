"""Embedding speed on the CPU, with and without one of the product's speed-ups.

Embeds ``--images`` real images with ``embed_images`` (cache off, the product's defaults otherwise) in a fresh
process per run, in the order off, on, on, off, so that drift in the machine's load hits both sides alike.
``on`` is the product as the ``activeft`` command line runs it (inside ``activeft_label.devices.process_tuning``,
which every command enters for its own process); ``off`` has one speed-up removed, chosen with ``--compare``:

* ``heap`` (default): ``activeft_label.embeddings.heap.large_blocks_stay_in_heap`` replaced by a no-op
  (glibc's default mmap and trim behaviour). Images: the demo's Fashion-MNIST sample (or scikit-learn's
  digits), written as PNG files.
* ``precision``: ``--precision bf16`` (on) against ``--precision fp32`` (off, the default ``auto``), both
  channels_last where the encoder is convolutional (the product's layout either way). Needs a CPU with bf16
  instructions. Images: as for ``heap``.
* ``layout``: the product (EfficientNet-Lite0 channels_last on the CPU) against the module and its batches
  left contiguous (NCHW), both fp32. Images: as for ``heap``.
* ``library``: the command line's path against a library call (``embed_images`` from Python, the connectors,
  the FiftyOne App's operators), which leaves process-wide state alone: no ``process_tuning`` block, so glibc's
  thresholds stay as they were. Images: as for ``heap``.
* ``decoding``: large JPEGs decoded in full instead of at a reduced scale (``images.decode_side``).
  Images: the JPEG photographs in ``--photos`` (default: the wallpapers of Debian's
  ``plasma-workspace-wallpapers`` and ``gnome-backgrounds`` packages, ``apt-get install`` them), each
  linked under several names until there are ``--images`` files.

Reports images per second, user and system CPU seconds, peak RSS, and how close the two variants' features are
(bit-identical, or the cosine similarity of each image's two feature vectors).  ``ViT-B-32`` (open_clip) runs
from a checkpoint of random weights that this script writes: the speed of a forward pass does not depend on the
weights, and pretrained tags need a download.

    python bench/embedding_speed.py                                # 640 images, both encoders
    python bench/embedding_speed.py --images 320 --models efficientnet-lite0 --out ""
    python bench/embedding_speed.py --compare decoding --images 256 --models efficientnet-lite0
    python bench/embedding_speed.py --compare library --images 320 --models efficientnet-lite0
    python bench/embedding_speed.py --compare precision --images 1280
    python bench/embedding_speed.py --compare layout --images 1280 --models efficientnet-lite0
"""

import argparse
import contextlib
import datetime
import glob
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


PHOTO_FOLDERS = ("/usr/share/wallpapers", "/usr/share/backgrounds")

DESCRIPTIONS = {
    "heap": ("Embedding speed on the CPU: large activations kept in the heap",
             "`on` = the product (`embeddings/heap.py` around the batches); `off` = glibc's default mmap and "
             "trim thresholds."),
    "decoding": ("Embedding speed on the CPU: large JPEGs decoded at a reduced scale",
                 "`on` = the product (JPEGs decoded at the largest libjpeg reduction that keeps the shorter side "
                 "≥ twice the encoder's input, `embeddings/images.py`); `off` = every JPEG decoded in full."),
    "precision": ("Embedding speed on the CPU: bf16 against fp32",
                  "`on` = `precision=\"bf16\"` (autocast; this CPU reports avx512_bf16); `off` = "
                  "`precision=\"fp32\"` (what the default `auto` means). Both inside `devices.process_tuning`, "
                  "as the command line runs, channels_last for the convolutional encoder."),
    "layout": ("Embedding speed on the CPU: channels_last against contiguous",
               "`on` = the product (EfficientNet-Lite0 and its batches channels_last on the CPU); `off` = both "
               "left contiguous (NCHW). fp32, inside `devices.process_tuning`."),
    "library": ("Embedding speed on the CPU: the command line against a library call",
                "`on` = the `activeft` command line's path (inside `devices.process_tuning`, which every command "
                "enters for its own process: `embeddings/heap.py` raises glibc's thresholds around the batches); "
                "`off` = a library call (`embed_images` from Python, the connectors, the App's operators), which "
                "leaves glibc's settings as they were."),
}


def worker(compare, model, variant, folder, checkpoint, batch_size, workers, features_out):
    from activeft_label.devices import process_tuning
    from activeft_label.embeddings import embed, embed_images, load_encoder

    if variant == "off" and compare == "heap":
        embed.large_blocks_stay_in_heap = lambda enabled=True: contextlib.nullcontext()
    if variant == "off" and compare == "decoding":
        embed.decode_side = lambda preprocess: None
    precision = "bf16" if variant == "on" and compare == "precision" else "fp32"
    encoder = load_encoder(model, pretrained=checkpoint or None, device="cpu", precision=precision)
    if variant == "off" and compare == "layout" and encoder.channels_last:
        import torch

        encoder.module.to(memory_format=torch.contiguous_format)
        encoder.channels_last = False
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # The command line's path runs inside process_tuning; only --compare library's "off" is a plain library call.
    with contextlib.nullcontext() if variant == "off" and compare == "library" else process_tuning():
        result = embed_images(paths, encoder, batch_size=batch_size, cache_dir=False, progress=False,
                              num_workers=None if workers == "default" else int(workers))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    np.save(features_out, result.features)
    print(json.dumps({
        "images": len(result.kept), "wall": wall,
        "user": sum(a.ru_utime - b.ru_utime for a, b in zip(after, before)),
        "system": sum(a.ru_stime - b.ru_stime for a, b in zip(after, before)),
        "peak_rss_gib": after[0].ru_maxrss / 1024**2,
    }))


def agreement(runs):
    """"yes" if every run gave bit-identical features, else the cosine similarity of on and off per image."""
    first = np.load(runs["on"][0]["features"])
    if all(np.array_equal(first, np.load(r["features"])) for v in runs.values() for r in v):
        return "yes"
    off = np.load(runs["off"][0]["features"])
    cosine = (first * off).sum(axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(off, axis=1)
    return f"no: cosine ≥ {cosine.min():.4f} (mean {cosine.mean():.4f})"


def vit_checkpoint(folder):
    import open_clip
    import torch

    logging.getLogger().setLevel(logging.ERROR)         # open_clip warns that the weights are random: they are
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = os.path.join(folder, "vit_b_32_random.pt")
    torch.save(model.state_dict(), path)
    return path


def photo_folder(folder, photos, count):
    """Link the JPEGs found under ``photos`` into ``folder`` under ``count`` names (round robin)."""
    found = sorted(path for root in photos for pattern in ("*.jpg", "*.jpeg", "*.JPG")
                   for path in glob.glob(os.path.join(root, "**", pattern), recursive=True)
                   if os.path.getsize(path) > 200_000 and not os.path.islink(path))
    if not found:
        sys.exit(f"no JPEG photographs over 200 kB under {', '.join(photos)}: pass --photos, or "
                 "`apt-get install plasma-workspace-wallpapers gnome-backgrounds`")
    os.makedirs(folder)
    for k in range(count):
        os.symlink(found[k % len(found)], os.path.join(folder, f"{k:05d}.jpg"))
    from PIL import Image

    used = found[:count]
    sizes = [Image.open(path).size for path in used]
    return (f"{count} JPEG files ({len(used)} distinct photographs, {min(min(s) for s in sizes)}–"
            f"{max(max(s) for s in sizes)} px a side, linked round robin)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="efficientnet-lite0,ViT-B-32")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="append the table here ('' = print only)")
    parser.add_argument("--compare", choices=sorted(DESCRIPTIONS), default="heap")
    parser.add_argument("--photos", default=",".join(PHOTO_FOLDERS),
                        help="comma-separated folders searched for JPEG photographs (--compare decoding)")
    parser.add_argument("--workers", default="default",
                        help="DataLoader workers for every run (default: the product's default)")
    parser.add_argument("--_worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        compare, model, variant, folder, checkpoint, batch_size, workers, features_out = args._worker
        return worker(compare, model, variant, folder, checkpoint, int(batch_size), workers, features_out)

    from activeft_label.files.demo import demo_images, write_pngs
    from selection_speed import machine, publish

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "images")
        if args.compare == "decoding":
            described = photo_folder(folder, args.photos.split(","), args.images)
        else:
            images, _, _, source = demo_images(args.images, seed=0)
            write_pngs(images, folder)
            described = f"{args.images} PNG images of {source}"
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            checkpoint = vit_checkpoint(tmp) if model == "ViT-B-32" else ""
            runs = {"on": [], "off": []}
            for k, variant in enumerate(["off", "on", "on", "off"]):
                features = os.path.join(tmp, f"{variant}_{k}.npy")
                proc = subprocess.run([sys.executable, __file__, "--_worker", args.compare, model, variant, folder,
                                       checkpoint, str(args.batch_size), str(args.workers), features],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{model} {variant}: worker failed:\n{proc.stderr[-2000:]}")
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                run["features"] = features
                runs[variant].append(run)
                print(f"{model:18s} {variant:3s} {run['images'] / run['wall']:6.1f} img/s  user {run['user']:6.1f} s  "
                      f"system {run['system']:6.1f} s  peak RSS {run['peak_rss_gib']:.2f} GiB", flush=True)
            rows.append((model, runs, agreement(runs)))

    title, variants = DESCRIPTIONS[args.compare]
    workers_text = ("the product's other defaults (DataLoader workers included)" if args.workers == "default"
                    else f"{args.workers} DataLoader workers, the product's other defaults")
    lines = [f"## {title} — {datetime.date.today()}", "",
             f"Machine: {machine()}. {described}, "
             f"batch {args.batch_size}, cache off, {workers_text}; each "
             f"run in a fresh process, in the order off, on, on, off. {variants}", "",
             "| encoder | variant | images/s (two runs) | user CPU s | system CPU s | peak RSS (GiB) | speed-up | "
             "same features |", "|---|---|---|---|---|---|---|---|"]
    for model, runs, same in rows:
        rate = {v: [r["images"] / r["wall"] for r in rs] for v, rs in runs.items()}
        speedup = np.mean(rate["on"]) / np.mean(rate["off"])
        for variant in ("off", "on"):
            rs = runs[variant]
            rates = " / ".join(f"{x:.1f}" for x in rate[variant])
            user = " / ".join(f"{r['user']:.1f}" for r in rs)
            system = " / ".join(f"{r['system']:.1f}" for r in rs)
            peak = max(r["peak_rss_gib"] for r in rs)
            ratio, equal = (f"{speedup:.1f}×", same) if variant == "on" else ("", "")
            lines.append(f"| {model} | {variant} | {rates} | {user} | {system} | {peak:.2f} | {ratio} | {equal} |")
    compare = f" --compare {args.compare}" if args.compare != "heap" else ""
    compare += f" --workers {args.workers}" if args.workers != "default" else ""
    lines += ["", f"Command: `python bench/embedding_speed.py{compare} --images {args.images} --models {args.models}`.",
              ""]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
