"""BiLAF (ActiveFT cores + denoising + boundary samples) on small constructed pools (pure numpy/torch)."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from activeft_label import InputError, SelectionOptions, select
from activeft_label.cli import main
from activeft_label.selection import METHODS
from activeft_label.selection.bilaf import (allocate, boundary_picks, default_cores, denoise, intra_distances,
                                            parse_cores)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def two_blobs(n=150, dim=8, phi=0.6, sigma=0.1, seed=0):
    """Two Gaussian blobs on the sphere whose centres are ``phi`` radians apart: touching for 0.6 and σ = 0.1."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(dim), np.zeros(dim)
    a[0], b[0], b[1] = 1.0, math.cos(phi), math.sin(phi)
    x = np.vstack([a + sigma * rng.normal(size=(n, dim)), b + sigma * rng.normal(size=(n, dim))])
    return unit(x).astype(np.float32), np.repeat([0, 1], n)


def clustered(n_clusters=8, per_cluster=40, dim=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = np.repeat(centers, per_cluster, axis=0) + spread * rng.normal(size=(n_clusters * per_cluster, dim))
    return x.astype(np.float32), np.repeat(np.arange(n_clusters), per_cluster)


def dist(a, b):
    """Distances as the module forms them: float64 products rounded to float32."""
    sim = (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T).astype(np.float32)
    return np.sqrt(np.maximum(np.float32(2) - np.float32(2) * sim, np.float32(0)))


# --------------------------------------------------------------------------- dense references of the stages

def reference_denoise(x, k=10, p_in=0.1, p_rm=0.1):
    """The denoising written plainly: the full distance matrix, every score recomputed each round."""
    n = x.shape[0]
    d = dist(x, x)
    included, remaining = [0], list(range(1, n))
    outliers = math.floor(p_rm * (n - 1) + 1e-9)
    while len(remaining) > outliers:
        kk = min(k, len(included))
        score = np.array([np.sort(d[r, included])[:kk].mean(dtype=np.float32) for r in remaining], np.float32)
        add = min(max(1, math.ceil(p_in * len(remaining) - 1e-9)), len(remaining) - outliers)
        taken = set(np.argsort(score, kind="stable")[:add].tolist())
        included += [remaining[t] for t in sorted(taken)]
        remaining = [r for t, r in enumerate(remaining) if t not in taken]
    mask = np.zeros(n, bool)
    mask[included] = True
    return mask


def reference_boundary(x, inlier, centres, own, count, claim, delta):
    """The boundary loop written plainly: every score recomputed before every pick."""
    d = dist(x, x)
    inl = np.flatnonzero(inlier)
    d_intra = np.array([(d[i, inl].sum() / (inl.size - (1 if inlier[i] else 0))) for i in range(x.shape[0])])
    inter = dist(x, centres)
    uses = np.zeros(centres.shape[0])
    alive = inlier.copy()
    alive[0] = False
    picked = np.zeros_like(alive)
    chosen, opponents = [], []
    for _ in range(count):
        if not alive.any():
            alive = inlier & ~picked
            alive[0] = False
            if not alive.any():
                alive = ~picked
                alive[0] = False
        top = (delta ** uses)[None, :] * inter - d_intra[:, None]
        score = top / np.maximum(inter, d_intra[:, None])
        score[:, own] = np.inf
        best = np.where(alive, score.min(axis=1), np.inf)
        j = int(np.argmin(best))
        chosen.append(j)
        picked[j], alive[j] = True, False
        opponents.append(int(np.argmin(score[j])))
        uses[opponents[-1]] += 1
        rest = np.flatnonzero(alive)
        alive[rest[np.argsort(d[j, rest], kind="stable")[:claim]]] = False
    return chosen, opponents


def blob_cluster(n=40, dim=6, sigma=0.15, seed=0, outlier=None):
    """One cluster, its centre first, as the stages receive it (float64 unit rows)."""
    rng = np.random.default_rng(seed)
    centre = unit(rng.normal(size=(1, dim)))
    x = np.vstack([centre, unit(centre + sigma * rng.normal(size=(n - 1, dim)))])
    if outlier is not None:
        x = np.vstack([x, outlier])
    return x


# --------------------------------------------------------------------------- stage 2: denoising

def test_denoising_drops_an_isolated_member_and_matches_the_plain_algorithm():
    base = blob_cluster(n=40, seed=1)                                   # chord radius of the blob ≲ 0.6
    c = base[0]
    v = np.random.default_rng(2).normal(size=6)
    v = (v - (v @ c) * c) / np.linalg.norm(v - (v @ c) * c)
    far = math.cos(1.2) * c + math.sin(1.2) * v                         # 1.2 rad off the centre
    x = np.vstack([base, far])
    inlier = denoise(torch.as_tensor(x), k_neighbors=10, p_in=0.1, p_rm=0.1, memory_budget=1 << 20).numpy()
    assert inlier[0] and not inlier[-1]                                # the centre stays, the outlier goes
    assert (~inlier).sum() == math.floor(0.1 * 40)                      # exactly the last 10% of the members
    assert np.array_equal(inlier, reference_denoise(x))
    assert denoise(torch.as_tensor(x), p_rm=0.0).all()                  # no share dropped: everyone is in


@pytest.mark.parametrize("k, p_in, p_rm", [(10, 0.1, 0.1), (3, 0.25, 0.2), (1, 1.0, 0.0), (50, 0.05, 0.5)])
def test_denoising_follows_the_plain_algorithm_for_other_settings(k, p_in, p_rm):
    x = blob_cluster(n=57, seed=3)
    small = denoise(torch.as_tensor(x), k, p_in, p_rm, memory_budget=64).numpy()       # one row per chunk
    large = denoise(torch.as_tensor(x), k, p_in, p_rm, memory_budget=1 << 30).numpy()
    assert np.array_equal(small, large)
    assert np.array_equal(small, reference_denoise(x, k, p_in, p_rm))


def test_denoising_a_cluster_of_one_or_two_rows():
    assert denoise(torch.as_tensor(blob_cluster(n=1))).tolist() == [True]
    assert denoise(torch.as_tensor(blob_cluster(n=2))).tolist() == [True, True]       # ⌊0.1 · 1⌋ = 0 dropped


# --------------------------------------------------------------------------- stage 3: boundary selection

@pytest.mark.parametrize("delta, count, claim", [(1.1, 6, 3), (1.0, 4, 0), (3.0, 8, 2), (1.1, 38, 5)])
def test_boundary_loop_follows_the_plain_algorithm(delta, count, claim):
    """Incremental rescoring (only rows whose opponent was penalised) and refills give the plain loop's picks."""
    rng = np.random.default_rng(4)
    x = blob_cluster(n=45, seed=5)
    others = unit(x[:1] + 0.5 * rng.normal(size=(5, 6)))               # five opposing centres around it
    centres = np.vstack([others[:2], x[:1], others[2:]])                 # this cluster is centre number 2
    inlier = reference_denoise(x)
    xt, inl = torch.as_tensor(x), torch.as_tensor(inlier)
    d_intra = intra_distances(xt, inl, memory_budget=1 << 20)
    fast = boundary_picks(xt, d_intra, inl, torch.as_tensor(centres), 2, count, claim, delta, memory_budget=256)
    plain, _ = reference_boundary(x, inlier, centres, 2, count, claim, delta)
    assert fast.tolist() == plain
    assert 0 not in plain and len(set(plain)) == count


def test_the_opponent_penalty_spreads_picks_over_neighbouring_clusters():
    """An opponent on each side, one nearer: without penalty (δ = 1) the picks face the nearer one; with δ = 1.5
    each use of an opponent makes the other one's boundary the lower score, so they alternate."""
    x = blob_cluster(n=60, seed=7)
    c = x[0]
    v = np.random.default_rng(8).normal(size=6)
    v = (v - (v @ c) * c) / np.linalg.norm(v - (v @ c) * c)
    centres = np.vstack([c, math.cos(0.35) * c + math.sin(0.35) * v, math.cos(0.5) * c - math.sin(0.5) * v])
    xt, inlier = torch.as_tensor(x), reference_denoise(x)
    d_intra = intra_distances(xt, torch.as_tensor(inlier))
    for delta in (1.0, 1.5):
        picks, opponents = reference_boundary(x, inlier, centres, 0, 8, 0, delta)
        fast = boundary_picks(xt, d_intra, torch.as_tensor(inlier), torch.as_tensor(centres), 0, 8, 0, delta)
        assert fast.tolist() == picks
        if delta == 1.0:
            assert opponents.count(1) >= 7
        else:
            assert opponents == [1, 2] * 4


def test_quotas_sum_exactly_and_respect_every_cluster():
    for sizes, total in [([100, 50, 50], 10), ([1, 1, 298], 7), ([3, 3, 3, 1], 10), ([1, 1, 1], 3),
                         ([5, 7, 11, 13, 1, 1, 1], 20), ([40], 40), ([97, 2, 1], 3)]:
        quotas = allocate(sizes, total)
        assert quotas.sum() == total and (quotas >= 1).all() and (quotas <= np.array(sizes)).all(), (sizes, quotas)
        share = total * np.array(sizes) / np.sum(sizes)
        assert (np.abs(quotas - share) < 1 + 1e-9).all() or (np.array(sizes) < np.sum(sizes) / total).any()
    assert allocate([100, 50, 50], 10).tolist() == [5, 3, 2]            # remainder ties: the lower cluster


# --------------------------------------------------------------------------- the whole method through select()

def margins(x, rows, cores):
    """| D(x, core_a) − D(x, core_b) |: 0 on the bisector between the two cores."""
    d = dist(x[rows], x[cores])
    return np.abs(d[:, 0] - d[:, 1])


def test_boundary_picks_lie_between_two_touching_blobs():
    x, labels = two_blobs()
    result = select(x, 4, "bilaf", cores=2, iterations=100)
    cores, boundary = result.indices[:2], result.indices[2:]
    assert sorted(labels[cores].tolist()) == [0, 1]                     # one core per blob
    assert result.params["cores"] == 2 and np.unique(result.indices).size == 4
    pool_margins = margins(x, np.arange(x.shape[0]), cores)
    picked = margins(x, boundary, cores)
    assert (picked < margins(x, cores, cores).min()).all()
    assert (picked < np.quantile(pool_margins, 0.25)).all()             # well inside the boundary quarter
    randoms = [margins(x, select(x, 2, "random", seed=s).indices, cores).mean() for s in range(5)]
    assert picked.mean() < 0.5 * min(randoms)
    assert sorted(labels[boundary].tolist()) == [0, 1]                  # one boundary pick on each side


def test_an_isolated_point_between_the_blobs_is_dropped_by_the_denoising():
    """Two labeled rows at the blobs' centres are the cores (cores=0), so the clusters are known."""
    x, labels = two_blobs(n=80, phi=1.0, sigma=0.05, seed=1)
    a, b = x[labels == 0].mean(axis=0), x[labels == 1].mean(axis=0)
    between = unit((0.56 * a + 0.44 * b)[None, :]).astype(np.float32)  # nearer blob 0, far from both
    pool = np.vstack([x, between])
    centres = [int(np.argmax(x @ a)), int(np.argmax(x @ b))]
    denoised = select(pool, 2, "bilaf", cores=0, fixed=centres)
    assert pool.shape[0] - 1 not in denoised.indices
    assert sorted(labels[denoised.indices].tolist()) == [0, 1]         # one boundary pick per blob
    raw = select(pool, 2, "bilaf", cores=0, fixed=centres, p_rm=0.0)    # no denoising: the outlier scores lowest
    assert pool.shape[0] - 1 in raw.indices


@pytest.mark.parametrize("budget", [2, 3, 7, 25, 60, 150])
def test_exactly_b_unique_ranked_picks_on_random_and_clustered_pools(budget):
    rng = np.random.default_rng(budget)
    for x in (rng.normal(size=(200, 16)).astype(np.float32), clustered(seed=budget)[0]):
        result = select(x, budget, "bilaf", iterations=30)
        assert result.indices.shape == (budget,) and np.unique(result.indices).size == budget
        assert sorted(result.ranks.tolist()) == list(range(1, budget + 1))
        assert result.cluster_sizes.sum() == x.shape[0]
        assert result.params["cores"] == default_cores(x.shape[0], budget)
        assert len(result.loss_history) == 30


def test_explicit_cores_counts_fractions_and_percentages():
    x, _ = clustered(seed=11)                                           # 320 items
    assert select(x, 20, "bilaf", cores=8, iterations=20).params["cores"] == 8
    assert select(x, 20, "bilaf", cores="2.5%", iterations=20).params["cores"] == 8
    assert select(x, 20, "bilaf", cores=0.025, iterations=20).params["cores"] == 8
    assert select(x, 20, "bilaf", cores="8", iterations=20).params["cores"] == 8
    full = select(x, 12, "bilaf", cores=12, iterations=20)              # all cores: BiLAF is ActiveFT
    plain = select(x, 12, "activeft", iterations=20)
    assert sorted(full.indices.tolist()) == sorted(plain.indices.tolist())
    assert parse_cores(None, 100) is None and parse_cores("0.5%", 1000) == 5 and parse_cores(3.0, 10) == 3


def test_same_seed_same_picks_other_seed_other_picks():
    x = np.random.default_rng(12).normal(size=(300, 12)).astype(np.float32)
    a = select(x, 30, "bilaf", cores=6, iterations=40, seed=3)
    b = select(x, 30, "bilaf", cores=6, iterations=40, seed=3)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.ranks, b.ranks)
    assert a.loss_history == b.loss_history
    others = [select(x, 30, "bilaf", cores=6, iterations=40, seed=s).indices for s in (4, 5)]
    assert any(set(o.tolist()) != set(a.indices.tolist()) for o in others)


def test_fixed_rows_are_never_picked_and_count_as_their_clusters_picks():
    x, labels = clustered(n_clusters=6, per_cluster=40, seed=13)
    fixed = np.flatnonzero(labels < 2)[::5]                             # 16 labeled rows in clusters 0 and 1
    result = select(x, 24, "bilaf", cores=4, iterations=60, fixed=fixed)
    assert not np.isin(result.indices, fixed).any() and np.unique(result.indices).size == 24
    assert result.params["fixed"] == fixed.size
    # The labeled clusters already hold their share (16 rows of 40 + 40 of 240 items): the new picks go elsewhere.
    assert (labels[result.indices] >= 2).sum() >= 18
    only_labeled = select(x, 10, "bilaf", cores=0, iterations=60, fixed=fixed)   # every pick a boundary pick
    assert not np.isin(only_labeled.indices, fixed).any() and np.unique(only_labeled.indices).size == 10
    assert only_labeled.loss is None and only_labeled.loss_history == []
    default = select(x, 10, "bilaf", iterations=20, fixed=fixed)         # 16 labeled rows exceed 0.5% of 240
    assert default.params["cores"] == 0


def test_a_small_memory_budget_gives_the_same_picks():
    x, _ = clustered(n_clusters=5, per_cluster=60, seed=14)
    small = select(x, 40, "bilaf", cores=5, iterations=40, memory_budget=4096)
    large = select(x, 40, "bilaf", cores=5, iterations=40, memory_budget=1 << 30)
    assert np.array_equal(small.indices, large.indices) and np.array_equal(small.ranks, large.ranks)


def test_a_large_cluster_is_processed_in_chunks():
    x = np.random.default_rng(15).normal(size=(1500, 8)).astype(np.float32)
    small = select(x, 30, "bilaf", cores=2, iterations=10, memory_budget=16 << 10)    # 16 KiB blocks
    large = select(x, 30, "bilaf", cores=2, iterations=10)
    assert np.array_equal(small.indices, large.indices)


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 5, "cores": 6}, "budget 5 is below the 6 core samples"),
    ({"budget": 5, "cores": "30%"}, "below the 12 core samples"),
    ({"budget": 5, "cores": 1}, "at least 2 clusters"),
    ({"budget": 5, "cores": 0}, "at least 2"),
    ({"budget": 5, "cores": "abc"}, "neither a count"),
    ({"budget": 5, "cores": -1}, "at least 0"),
    ({"budget": 5, "cores": 2.5}, "whole count nor a fraction"),
    ({"budget": 5, "cores": "150%"}, "at most 100%"),
    ({"budget": 5, "cores": True}, "count or a share"),
    ({"budget": 5, "k_neighbors": 0}, "k_neighbors"),
    ({"budget": 5, "p_in": 0}, "p_in"),
    ({"budget": 5, "p_in": 1.5}, "p_in"),
    ({"budget": 5, "p_rm": 1.0}, "p_rm"),
    ({"budget": 5, "delta": 0.9}, "delta must be at least 1"),
    ({"budget": 5, "delta": float("nan")}, "delta"),
    ({"budget": 5, "typo": 3}, "has no parameter"),
    ({"budget": 5, "balance": 0}, "balance"),
    ({"budget": 5, "update": "other"}, "unknown update"),
])
def test_bad_parameters_are_rejected_before_any_work(kwargs, message, monkeypatch):
    import activeft_label.selection.api as api

    monkeypatch.setattr(api, "select_bilaf", lambda *a, **k: pytest.fail("work started"))
    x, _ = clustered(n_clusters=2, per_cluster=20)
    with pytest.raises(InputError, match=message):
        select(x, method="bilaf", **kwargs)


def test_bilaf_parameters_belong_to_bilaf_only():
    x, _ = clustered(n_clusters=2, per_cluster=20)
    for method in ("activeft", "random", "kmeans"):
        with pytest.raises(InputError, match="no parameter"):
            select(x, 5, method, cores=2)


def test_bilaf_is_a_method_of_every_face():
    assert METHODS.index("bilaf") == METHODS.index("activeft") + 1
    assert SelectionOptions(method="bilaf", cores="1%").as_kwargs()["cores"] == "1%"
    assert "cores" not in SelectionOptions().as_kwargs()


# --------------------------------------------------------------------------- command line

def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_selects_with_bilaf_and_refuses_cores_for_other_methods(tmp_path):
    x, labels = clustered(n_clusters=6, per_cluster=50, seed=16)
    np.savez(tmp_path / "feats.npz", features=x)
    out = tmp_path / "picks.csv"
    result = run(["select", str(tmp_path / "feats.npz"), "--method", "bilaf", "-b", "18", "--cores", "6",
                  "--iters", "40", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "rank,index,id,path,cluster_size" and len(rows) == 19
    assert len({r.split(",")[1] for r in rows[1:]}) == 18
    assert "Selected 18 of 300 items with bilaf" in result.output
    percent = run(["select", str(tmp_path / "feats.npz"), "--method", "bilaf", "-b", "18", "--cores", "2%",
                   "--iters", "40", "--out", str(tmp_path / "p.json"), "-q"])
    assert percent.exit_code == 0, percent.output
    refused = run(["select", str(tmp_path / "feats.npz"), "--method", "random", "-b", "18", "--cores", "6",
                   "--out", str(tmp_path / "r.csv"), "-q"])
    assert refused.exit_code == 2 and "--cores applies to --method bilaf only" in refused.output
    assert not (tmp_path / "r.csv").exists()
    too_many = run(["select", str(tmp_path / "feats.npz"), "--method", "bilaf", "-b", "4", "--cores", "6",
                    "--out", str(tmp_path / "t.csv"), "-q"])
    assert too_many.exit_code == 2 and "below the 6 core samples" in too_many.output
    assert "Traceback" not in too_many.output and not (tmp_path / "t.csv").exists()


def test_evaluate_runs_bilaf_with_its_cores(tmp_path):
    x, labels = clustered(n_clusters=4, per_cluster=50, seed=17)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", labels)
    result = run(["evaluate", "--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy"),
                  "-b", "12", "--methods", "bilaf,random", "--seeds", "1", "--iters", "30", "--cores", "4",
                  "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    assert "| bilaf |" in result.output
    bad = run(["evaluate", "--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy"),
               "-b", "12", "--methods", "random", "--seeds", "1", "--cores", "4"])
    assert bad.exit_code == 2 and "--cores applies to the bilaf method only" in bad.output
