"""Embed Fashion-MNIST (train 60,000 + test 10,000) once with the offline EfficientNet-Lite0 encoder.

Writes bench/.cache/fashion_mnist_efficientnet-lite0.npz with arrays train_features, train_labels,
test_features, test_labels. The images go through the encoder's own preprocessing (the same as for a
folder of PNG files), straight from Debian's dataset-fashion-mnist without writing files.

    python bench/fashion_features.py            # ~20-40 min on a 2-core CPU, resumable per split
"""

import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from activeft_label.demo import fashion_mnist  # noqa: E402
from activeft_label.embeddings import load_encoder  # noqa: E402

CACHE = os.path.join(HERE, ".cache")
OUT = os.path.join(CACHE, "fashion_mnist_efficientnet-lite0.npz")


def embed_split(encoder, images, batch_size=64, label=""):
    from PIL import Image

    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        batch = torch.stack([encoder.preprocess(Image.fromarray(img).convert("RGB")) for img in images[start:start + batch_size]])
        out[start:start + batch_size] = encoder.encode(batch).numpy()
        if start % (batch_size * 50) == 0:
            done = start + len(batch)
            rate = done / (time.perf_counter() - started)
            print(f"{label}: {done}/{len(images)} ({rate:.0f} img/s)", flush=True)
    return out


def main():
    os.makedirs(CACHE, exist_ok=True)
    encoder = load_encoder("efficientnet-lite0", device="cpu")
    arrays = {}
    for split in ("test", "train"):
        part = os.path.join(CACHE, f"fashion_{split}.npy")
        images, labels = fashion_mnist(split)
        if not os.path.exists(part):
            with torch.inference_mode():
                np.save(part + ".tmp.npy", embed_split(encoder, images, label=split))
            os.replace(part + ".tmp.npy", part)
        arrays[f"{split}_features"] = np.load(part)
        arrays[f"{split}_labels"] = labels
    np.savez(OUT + ".tmp.npz", **arrays)
    os.replace(OUT + ".tmp.npz", OUT)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
