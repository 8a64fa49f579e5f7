"""Real images for the demo, the tests and the benchmarks, offline.

The pool is Fashion-MNIST (Debian's ``dataset-fashion-mnist``), or
scikit-learn's digits where that package is not installed, written out as PNG
files so the demo goes through the same path as a user's folder of images.
"""

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def read_idx(path):
    """Read an IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split="train", root=FASHION_MNIST_DIR):
    """(images uint8 N×28×28, labels N) of Fashion-MNIST's train or test split."""
    prefix = "train" if split == "train" else "t10k"
    return (read_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz"),
            read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64))


def demo_images(size, seed=0):
    """A seeded sample of ``size`` real images, their labels, class names and the data set's name."""
    rng = np.random.default_rng(seed)
    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        images, labels = fashion_mnist("train")
        names, source = FASHION_MNIST_CLASSES, "Fashion-MNIST (Debian dataset-fashion-mnist)"
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
        labels = digits.target.astype(np.int64)
        names, source = tuple(str(d) for d in range(10)), "scikit-learn digits (install dataset-fashion-mnist for more)"
    take = rng.choice(images.shape[0], size=min(size, images.shape[0]), replace=False)
    take.sort()
    return images[take], labels[take], names, source


def write_pngs(images, folder, written=None):
    """Write uint8 grayscale images as PNG files; returns their paths (existing files are reused).

    ``written``: a list that each newly written path is appended to as soon as it exists, so that a caller
    interrupted half-way knows what to remove.
    """
    import io

    from PIL import Image

    from .output import write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        path = folder / f"img_{k:05d}.png"
        if not path.exists():
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format="PNG")
            # Atomic: an interrupted run must not leave a truncated PNG that the next run would reuse.
            write_atomic(path, buffer.getvalue(), mode="wb")
            if written is not None:
                written.append(path)
        paths.append(str(path))
    return paths
