"""Select 1% of a folder of images from Python, then a second round that builds on the first.

    python examples/select_from_python.py /path/to/images
"""

import sys

from activeft_label import load_pool, select


def main(folder):
    pool = load_pool(folder)                       # embeds with EfficientNet-Lite0 (cached on disk)
    if pool.skipped:
        print(f"skipped {len(pool.skipped)} unreadable images")

    first = select(pool.features, "1%", progress=True)
    print(f"round 1: {first.budget} items, coverage {first.coverage:.4f}")
    for record in first.records(pool.ids, pool.paths)[:5]:
        print(f"  rank {record['rank']}: {record['id']} (stands for {record['cluster_size']} items)")

    # Round 2: the round-1 picks are labeled now; they act as fixed centroids.
    second = select(pool.features, "1%", fixed=first.indices, progress=True)
    print(f"round 2: {second.budget} more items, coverage of both rounds {second.coverage:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
