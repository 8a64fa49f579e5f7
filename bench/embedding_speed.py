"""Embedding speed on the CPU, with and without keeping large activations in glibc's heap.

Writes ``--images`` real images (the demo's Fashion-MNIST sample, or scikit-learn's digits) as PNG files, then
embeds them with ``embed_images`` (cache off, the product's defaults otherwise) in a fresh process per run, in
the order off, on, on, off, so that drift in the machine's load hits both sides alike:

* ``on``: the product as shipped (``activeft_label.embeddings.heap.large_blocks_stay_in_heap`` around the batches);
* ``off``: the same with that context replaced by a no-op (glibc's default mmap and trim behaviour).

Reports images per second, user and system CPU seconds, peak RSS, and whether both variants gave bit-identical
features.  ``ViT-B-32`` (open_clip) runs from a checkpoint of random weights that this script writes: the speed
of a forward pass does not depend on the weights, and pretrained tags need a download.

    python bench/embedding_speed.py                                # 640 images, both encoders
    python bench/embedding_speed.py --images 320 --models efficientnet-lite0 --out ""
"""

import argparse
import contextlib
import datetime
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


def worker(model, variant, folder, checkpoint, batch_size, features_out):
    from activeft_label.embeddings import embed, embed_images, load_encoder

    if variant == "off":
        embed.large_blocks_stay_in_heap = lambda enabled=True: contextlib.nullcontext()
    encoder = load_encoder(model, pretrained=checkpoint or None, device="cpu")
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = embed_images(paths, encoder, batch_size=batch_size, cache_dir=False, progress=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    np.save(features_out, result.features)
    print(json.dumps({
        "images": len(result.kept), "wall": wall,
        "user": sum(a.ru_utime - b.ru_utime for a, b in zip(after, before)),
        "system": sum(a.ru_stime - b.ru_stime for a, b in zip(after, before)),
        "peak_rss_gib": after[0].ru_maxrss / 1024**2,
    }))


def vit_checkpoint(folder):
    import open_clip
    import torch

    logging.getLogger().setLevel(logging.ERROR)         # open_clip warns that the weights are random: they are
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = os.path.join(folder, "vit_b_32_random.pt")
    torch.save(model.state_dict(), path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="efficientnet-lite0,ViT-B-32")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="append the table here ('' = print only)")
    parser.add_argument("--_worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        model, variant, folder, checkpoint, batch_size, features_out = args._worker
        return worker(model, variant, folder, checkpoint, int(batch_size), features_out)

    from activeft_label.demo import demo_images, write_pngs
    from selection_speed import machine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images, _, _, source = demo_images(args.images, seed=0)
        folder = os.path.join(tmp, "images")
        write_pngs(images, folder)
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            checkpoint = vit_checkpoint(tmp) if model == "ViT-B-32" else ""
            runs = {"on": [], "off": []}
            for k, variant in enumerate(["off", "on", "on", "off"]):
                features = os.path.join(tmp, f"{variant}_{k}.npy")
                proc = subprocess.run([sys.executable, __file__, "--_worker", model, variant, folder, checkpoint,
                                       str(args.batch_size), features], capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{model} {variant}: worker failed:\n{proc.stderr[-2000:]}")
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                run["features"] = features
                runs[variant].append(run)
                print(f"{model:18s} {variant:3s} {run['images'] / run['wall']:6.1f} img/s  user {run['user']:6.1f} s  "
                      f"system {run['system']:6.1f} s  peak RSS {run['peak_rss_gib']:.2f} GiB", flush=True)
            first = np.load(runs["on"][0]["features"])
            same = all(np.array_equal(first, np.load(r["features"])) for v in runs.values() for r in v)
            rows.append((model, runs, same))

    lines = [f"## Embedding speed on the CPU: large activations kept in the heap — {datetime.date.today()}", "",
             f"Machine: {machine()}. {args.images} PNG images of {source}, "
             f"batch {args.batch_size}, cache off, the product's other defaults (DataLoader workers included); each "
             f"run in a fresh process, in the order off, on, on, off. `on` = the product "
             f"(`embeddings/heap.py` around the batches); `off` = glibc's default mmap and trim thresholds.", "",
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
            ratio, equal = (f"{speedup:.1f}×", "yes" if same else "no") if variant == "on" else ("", "")
            lines.append(f"| {model} | {variant} | {rates} | {user} | {system} | {peak:.2f} | {ratio} | {equal} |")
    lines += ["", f"Command: `python bench/embedding_speed.py --images {args.images} --models {args.models}`.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
