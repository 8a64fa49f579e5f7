"""Pools larger than memory: memory-mapped features files and float16 storage in select() (issue #25)."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from activeft_label import select
from activeft_label.errors import InputError
from activeft_label.files.sources import load_features
from activeft_label.selection._common import prepare_points, rows_of

CPU = torch.device("cpu")


def _clustered(n=6000, dim=32, clusters=30, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return x.astype(np.float32)


def test_float16_storage_holds_half_the_bytes_and_gives_unit_float32_rows():
    x = _clustered()
    wide = prepare_points(x, CPU, storage="float32")
    half = prepare_points(x, CPU, storage="float16")
    assert wide.dtype == torch.float32 and half.dtype == torch.float16
    assert half.element_size() * half.nelement() * 2 == wide.element_size() * wide.nelement()
    rows = rows_of(half, slice(0, 1000))
    assert rows.dtype == torch.float32
    assert torch.allclose(torch.linalg.vector_norm(rows, dim=1), torch.ones(1000), atol=1e-6)
    assert float((rows * wide[:1000]).sum(dim=1).min()) > 1 - 1e-5      # the same directions, to float16's rounding
    # The same row always widens to the same vector, whether gathered alone or in a slice.
    assert torch.equal(rows_of(half, torch.tensor([7, 3]))[1], rows[3])


def test_auto_storage_follows_the_features_dtype():
    x = _clustered(n=1500)
    assert select(x.astype(np.float16), 20, iterations=5).params["storage"] == "float16"
    assert select(x, 20, iterations=5).params["storage"] == "float32"
    assert select(x, 20, iterations=5, storage="float16").params["storage"] == "float16"
    assert select(x.astype(np.float16), 20, iterations=5, storage="float32").params["storage"] == "float32"
    with pytest.raises(InputError, match="unknown storage 'float8'"):
        select(x, 20, storage="float8")


@pytest.mark.parametrize("minibatch", [None, 1024])
def test_float16_storage_selects_as_well_as_float32(minibatch):
    x = _clustered()
    kwargs = {} if minibatch is None else {"minibatch": minibatch}
    wide = select(x, 60, iterations=60, **kwargs)
    half = select(x, 60, iterations=60, storage="float16", **kwargs)
    again = select(x, 60, iterations=60, storage="float16", **kwargs)
    np.testing.assert_array_equal(half.indices, again.indices)           # deterministic for a seed
    assert np.unique(half.indices).size == 60
    assert abs(half.coverage - wide.coverage) < 0.01 * wide.coverage
    assert np.intersect1d(half.indices, wide.indices).size >= 40
    assert sorted(half.ranks) == list(range(1, 61))
    assert half.cluster_sizes.sum() == x.shape[0]


def test_float16_storage_with_fixed_rows_and_the_other_methods():
    x = _clustered(n=3000)
    fixed = np.arange(0, 3000, 300)
    half = select(x, 40, iterations=30, storage="float16", fixed=fixed, minibatch=512)
    assert not np.isin(half.indices, fixed).any() and np.unique(half.indices).size == 40
    for method in ("kmeans", "coreset", "bilaf"):
        result = select(x.astype(np.float16), 30, method, iterations=20)
        assert result.params["storage"] == "float32"                     # widened: they work on the whole matrix
        assert np.unique(result.indices).size == 30


def test_bad_rows_are_named_across_chunks_before_any_work():
    x = _clustered(n=40000, dim=8)
    x[3] = np.nan
    x[20000] = np.inf
    x[33000] = 0.0
    with pytest.raises(InputError, match=r"NaN or infinite values in 2 row\(s\) \(first: 3, 20000\)"):
        select(x.astype(np.float16), 10, storage="float16")
    x[3] = 1.0
    x[20000] = 1.0
    with pytest.raises(InputError, match=r"1 all-zero row\(s\) \(first: 33000\)"):
        select(x, 10)


def test_centred_float16_storage_matches_centred_float32():
    x = np.abs(_clustered(n=4000)) + 0.5                                 # a shared direction, as after a ReLU
    wide = prepare_points(x, CPU, storage="float32", center=True)
    half = prepare_points(x, CPU, storage="float16", center=True)
    cosine = (rows_of(half, slice(None)) * wide).sum(dim=1)
    assert float(cosine.min()) > 1 - 1e-4
    assert float(torch.linalg.vector_norm(wide.mean(dim=0))) < 0.05     # centred: the mean direction removed


def test_npy_and_npz_files_are_memory_mapped_and_select_alike(tmp_path):
    x = _clustered(n=2000).astype(np.float16)
    np.save(tmp_path / "f.npy", x)
    np.savez(tmp_path / "f.npz", features=x, ids=np.asarray([f"img{i}" for i in range(2000)]))
    np.savez_compressed(tmp_path / "c.npz", features=x)
    from_npy, ids = load_features(tmp_path / "f.npy")
    from_npz, npz_ids = load_features(tmp_path / "f.npz")
    compressed, _ = load_features(tmp_path / "c.npz")
    assert isinstance(from_npy, np.memmap) and isinstance(from_npz, np.memmap)
    assert not isinstance(compressed, np.memmap)                         # compressed members are read whole
    assert from_npy.dtype == from_npz.dtype == compressed.dtype == np.float16
    np.testing.assert_array_equal(from_npz, x)
    assert ids[:2] == ["0", "1"] and npz_ids[:2] == ["img0", "img1"]
    with zipfile.ZipFile(tmp_path / "f.npz") as archive:                 # the case mapped: a stored member
        assert archive.getinfo("features.npy").compress_type == zipfile.ZIP_STORED
    results = [select(features, 25, iterations=20).indices for features in (x, from_npy, from_npz, compressed)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_other_dtypes_and_byte_orders_are_read_as_float32(tmp_path):
    x = _clustered(n=50, dim=4)
    np.save(tmp_path / "big.npy", x.astype(">f4"))
    np.save(tmp_path / "wide.npy", x.astype(np.float64))
    for name in ("big.npy", "wide.npy"):
        features, _ = load_features(tmp_path / name)
        assert features.dtype == np.float32 and not isinstance(features, np.memmap)
        np.testing.assert_allclose(features, x, rtol=1e-6)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RssFile from /proc")
def test_pages_of_a_mapped_file_are_given_back_as_they_are_read(tmp_path):
    # 160 MB of float16 rows: without handing the pages back, all of them would stay resident beside the tensor.
    rows = 200_000
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, 400))
    for start in range(0, rows, 50_000):
        out[start:start + 50_000] = np.random.default_rng(start).normal(size=(50_000, 400)).astype(np.float16)
    out.flush()
    del out
    script = (
        "import numpy as np, torch\n"
        "from activeft_label.selection._common import prepare_points\n"
        "def rss_file():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('RssFile:'): return int(line.split()[1]) // 1024\n"
        f"a = np.load({str(path)!r}, mmap_mode='r')\n"
        "before = rss_file()\n"
        "points = prepare_points(a, torch.device('cpu'), storage='float16')\n"
        "after = rss_file()\n"
        "assert points.shape == (200000, 400)\n"
        "print(after - before)\n"
    )
    grown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(grown.stdout.strip()) < 40, grown.stdout      # MB still mapped after reading a 160 MB file


def test_cli_select_reads_a_float16_features_file_and_says_so(tmp_path):
    x = _clustered(n=1200).astype(np.float16)
    np.save(tmp_path / "f.npy", x)
    out = tmp_path / "sel.csv"
    done = subprocess.run([sys.executable, "-m", "activeft_label.cli", "select", str(tmp_path / "f.npy"), "-b", "12",
                           "--iters", "10", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert "float16 storage" in done.stdout
    assert len(out.read_text().strip().splitlines()) == 13
    bad = subprocess.run([sys.executable, "-m", "activeft_label.cli", "select", str(tmp_path / "f.npy"), "-b", "12",
                          "--storage", "float8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "float8" in bad.stderr and "Traceback" not in bad.stderr
