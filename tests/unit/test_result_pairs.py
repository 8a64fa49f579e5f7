"""Cluster sizes in rank order come from ``ranked_cluster_sizes``; ``cluster_sizes`` still follows ``indices``
(issue 24, item 8)."""

import numpy as np

from activeft_label import select


def test_ranked_cluster_sizes_pair_with_ranked_indices():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(6, 12))
    x = (centers[rng.integers(0, 6, 400)] + 0.4 * rng.normal(size=(400, 12))).astype(np.float32)
    result = select(x, 12, "kmeans", seed=0)
    by_row = dict(zip(result.indices.tolist(), result.cluster_sizes.tolist()))
    assert result.ranked_cluster_sizes.tolist() == [by_row[i] for i in result.ranked_indices.tolist()]
    records = result.records()
    assert [r["cluster_size"] for r in records] == result.ranked_cluster_sizes.tolist()
    assert [r["index"] for r in records] == result.ranked_indices.tolist()
    assert not np.array_equal(result.ranks, np.arange(1, 13))       # the two orders differ here
    assert int(result.cluster_sizes.sum()) == 400
