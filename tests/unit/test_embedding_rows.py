"""The result matrix of embed_images: cached rows streamed into it, new rows written as they come, large ones mapped.

Real images through the real offline encoder, a real SQLite cache in tmp dirs; the memory test runs a child
process and reads its own peak RSS from /proc.
"""

import gc
import json
import mmap
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

from activeft_label.embeddings import DEFAULT_MODEL, embed_images
from activeft_label.embeddings import cache as cache_module
from activeft_label.embeddings import embed as embed_module
from activeft_label.embeddings.cache import open_cache
from activeft_label.embeddings.names import resolve_model

GOOD = 8


def make_images(folder, count=GOOD):
    """``count`` distinct 64 px PNGs (a coloured disc and bar on a coloured ground, placed by index)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        ground, disc, bar = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(3))
        image = Image.new("RGB", (64, 64), ground)
        draw = ImageDraw.Draw(image)
        draw.ellipse((4 + 3 * i, 6, 34 + 3 * i, 36), fill=disc)
        draw.rectangle((0, 44 + i % 4, 64, 52 + i % 4), fill=bar)
        path = folder / f"image_{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight good images, a corrupt file and a missing one, and their reference features (no cache, one call)."""
    folder = tmp_path_factory.mktemp("rows")
    good = make_images(folder / "good")
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"this is not an image at all")
    reference = embed_images(good, cache_dir=False, progress=False)
    assert reference.features.shape == (GOOD, 1280)
    return {"good": good, "corrupt": str(corrupt), "missing": str(folder / "missing.png"),
            "reference": reference.features}


def mixed(images):
    """The input of the mixed run: good images with the corrupt and the missing file in between."""
    g = images["good"]
    paths = [g[0], images["corrupt"], g[1], g[2], images["missing"], g[3], g[4], g[5], g[6], g[7]]
    return paths, [0, 2, 3, 5, 6, 7, 8, 9]


def warm(cache, images):
    """Cache three of the good images (0, 2, 5) and remember the corrupt file; return that run's features."""
    g = images["good"]
    first = embed_images([g[0], g[2], g[5], images["corrupt"]], cache_dir=cache, progress=False)
    assert first.cached == 0 and first.embedded == 3 and len(first.skipped) == 1
    return first.features


def mapping_of(array):
    """The mmap.mmap an array's memory comes from, or None."""
    base = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base if isinstance(base, mmap.mmap) else None


def mapped_result_files():
    """This process's mappings of result files (deleted temporary files), as /proc/self/maps lists them."""
    with open("/proc/self/maps") as handle:
        return [line.split(None, 5)[-1].strip() for line in handle if ".activeft-rows-" in line]


def test_cached_new_failed_and_missing_images_give_what_they_gave_before(tmp_path, images, monkeypatch):
    monkeypatch.setattr(cache_module, "LOOKUP_CHUNK", 3)   # the lookup goes through several chunks
    cache = tmp_path / "cache"
    first = warm(cache, images)
    paths, kept = mixed(images)

    second = embed_images(paths, cache_dir=cache, progress=False, batch_size=3)
    assert second.kept.tolist() == kept and second.kept.dtype == np.int64
    assert second.cached == 3 and second.embedded == GOOD - 3
    assert [p for p, _ in second.skipped] == [images["corrupt"], images["missing"]]
    assert "not an image" in second.skipped[0][1] and second.skipped[1][1] == "file not found"
    features = second.features
    assert features.dtype == np.float32 and features.flags.c_contiguous and features.shape == (GOOD, 1280)
    assert mapping_of(features) is None                     # 41 KB: a plain array
    np.testing.assert_array_equal(features[[0, 2, 5]], first)  # the cached rows, as stored
    np.testing.assert_allclose(features, images["reference"], rtol=1e-4, atol=1e-4)

    third = embed_images(paths, cache_dir=cache, progress=False)
    assert third.cached == GOOD and third.embedded == 0 and third.layout == ""
    assert third.kept.tolist() == kept and third.skipped == second.skipped
    np.testing.assert_array_equal(third.features, features)


def test_keyed_rows_in_the_mix(tmp_path, images):
    cache = tmp_path / "cache"
    g = images["good"]
    keys = [f"image {i}" for i in range(GOOD)]
    embed_images(g[:3], cache_dir=cache, progress=False, keys=keys[:3])
    # Keyed rows need no file: once cached, a path that does not exist still gets its row.
    paths = ["/nowhere/0.png", "/nowhere/1.png", "/nowhere/2.png", *g[3:], images["corrupt"]]
    result = embed_images(paths, cache_dir=cache, progress=False, keys=keys + ["the corrupt one"])
    assert result.cached == 3 and result.embedded == GOOD - 3
    assert result.kept.tolist() == list(range(GOOD))
    assert [p for p, _ in result.skipped] == [images["corrupt"]]
    np.testing.assert_allclose(result.features, images["reference"], rtol=1e-4, atol=1e-4)


def test_the_memory_mapped_matrix_gives_the_same_features(tmp_path, images, monkeypatch):
    cache = tmp_path / "cache"
    warm(cache, images)
    shutil.copytree(cache, tmp_path / "copy")           # the same cache for both runs: the same batches embedded
    paths, kept = mixed(images)
    in_memory = embed_images(paths, cache_dir=cache, progress=False, batch_size=3)
    assert mapping_of(in_memory.features) is None

    monkeypatch.setattr(embed_module, "MAPPED_RESULT_BYTES", 0)
    mapped = embed_images(paths, cache_dir=tmp_path / "copy", progress=False, batch_size=3)
    assert mapping_of(mapped.features) is not None
    assert mapped.features.dtype == np.float32 and mapped.features.flags.c_contiguous
    assert mapped.features.shape == (GOOD, 1280)   # the corrupt file's slot squeezed out: rows moved up in place
    np.testing.assert_array_equal(mapped.features, in_memory.features)
    assert mapped.kept.tolist() == kept and mapped.skipped == in_memory.skipped
    assert (mapped.cached, mapped.embedded) == (in_memory.cached, in_memory.embedded) == (3, GOOD - 3)
    # The file lives in the cache folder, unlinked: nothing but the cache is left there.
    assert sorted(os.listdir(tmp_path / "copy")) == ["embeddings.sqlite3"]
    files = mapped_result_files()
    assert files and all(f.startswith(str(tmp_path / "copy")) and f.endswith("(deleted)") for f in files)

    # Every image kept: the mapped matrix is the result itself, and it is writable like any array.
    whole = embed_images(images["good"], cache_dir=tmp_path / "copy", progress=False)
    assert whole.cached == GOOD and mapping_of(whole.features) is not None
    assert mapping_of(whole.features).size() == whole.features.nbytes
    np.testing.assert_array_equal(whole.features, in_memory.features)
    whole.features[0] = 0.0
    del mapped, whole
    gc.collect()
    assert mapped_result_files() == []                     # the map closed with the arrays: the file is gone


def test_without_a_cache_the_matrix_is_mapped_in_the_temporary_folder(tmp_path, images, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    monkeypatch.setattr(embed_module, "MAPPED_RESULT_BYTES", 0)
    result = embed_images(images["good"][:3], cache_dir=False, progress=False)
    assert mapping_of(result.features) is not None and os.listdir(folder) == []
    assert any(f.startswith(str(folder)) for f in mapped_result_files())
    np.testing.assert_allclose(result.features, images["reference"][:3], rtol=1e-4, atol=1e-4)


def test_where_no_file_can_be_mapped_the_matrix_is_held_in_memory(tmp_path, images, monkeypatch, caplog):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "does-not-exist"))
    monkeypatch.setattr(embed_module, "MAPPED_RESULT_BYTES", 0)
    with caplog.at_level("WARNING", logger=embed_module.__name__):
        result = embed_images(images["good"][:2], cache_dir=False, progress=False)
    assert mapping_of(result.features) is None
    assert "holding it in memory" in caplog.text
    np.testing.assert_allclose(result.features, images["reference"][:2], rtol=1e-4, atol=1e-4)


def store_under_the_default_model(cache, rows):
    """Store ``rows`` ((path bytes, size, mtime_ns, vector or reason)) as the default encoder's fp32 rows."""
    spec = resolve_model(DEFAULT_MODEL, None)
    handle = open_cache(cache, spec.name, spec.weights, "fp32")
    handle.store(rows)
    handle.close()


def file_key(path):
    st = os.stat(path)
    return os.fsencode(os.path.abspath(path)), st.st_size, st.st_mtime_ns


def test_cached_rows_of_two_sizes_are_all_embedded_again(tmp_path, images):
    cache = tmp_path / "cache"
    g = images["good"][:3]
    store_under_the_default_model(cache, [(*file_key(g[0]), np.ones(1280, np.float32)),
                                          (*file_key(g[1]), np.ones(7, np.float32))])
    result = embed_images(g, cache_dir=cache, progress=False)
    assert result.cached == 0 and result.embedded == 3
    np.testing.assert_allclose(result.features, images["reference"][:3], rtol=1e-4, atol=1e-4)


def test_cached_rows_of_another_size_than_the_encoder_are_embedded_again(tmp_path, images):
    cache = tmp_path / "cache"
    g = images["good"][:3]
    store_under_the_default_model(cache, [(*file_key(p), np.full(384, 2.0, np.float32)) for p in g])
    # Every row cached: the encoder is never loaded, and the rows are what the cache holds.
    alone = embed_images(g, cache_dir=cache, progress=False)
    assert alone.cached == 3 and alone.features.shape == (3, 384) and (alone.features == 2.0).all()
    # One more image needs the encoder, whose 1280-d rows replace them all.
    result = embed_images(g + [images["good"][3]], cache_dir=cache, progress=False)
    assert result.cached == 0 and result.embedded == 4 and result.features.shape == (4, 1280)
    np.testing.assert_allclose(result.features, images["reference"][:4], rtol=1e-4, atol=1e-4)


def test_a_vector_beats_a_failure_remembered_in_another_precision(tmp_path, images):
    cache = tmp_path / "cache"
    g = images["good"][:2]
    spec = resolve_model(DEFAULT_MODEL, None)
    other = open_cache(cache, spec.name, spec.weights, "bf16")
    other.store([(*file_key(g[0]), "could not be fetched"), (*file_key(g[1]), "not an image (bf16 run)")])
    other.close()
    store_under_the_default_model(cache, [(*file_key(g[0]), np.full(1280, 3.0, np.float32))])
    result = embed_images(g, cache_dir=cache, progress=False)
    assert result.kept.tolist() == [0] and result.cached == 1 and (result.features == 3.0).all()
    assert result.skipped == [(g[1], "not an image (bf16 run)")]   # remembered whatever the precision


#: Rows of the memory test: 300,000 × 384 float32 is a 461 MB matrix, under the mapping threshold.
ROWS, DIM = 300_000, 384

CHILD = textwrap.dedent("""
    import json, sys

    def status(field):
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    rows, cache = int(sys.argv[1]), sys.argv[2]
    from activeft_label.embeddings import embed_images

    keys = [f"row {i}" for i in range(rows)]
    paths = [f"/nowhere/{i}.png" for i in range(rows)]
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")                        # VmHWM starts again from the RSS of now
        before = status("VmRSS")
    except OSError:
        before = status("VmHWM")
    result = embed_images(paths, keys=keys, cache_dir=cache, progress=False)
    growth = status("VmHWM") - before
    print(json.dumps({"growth": growth, "bytes": result.features.nbytes, "shape": list(result.features.shape),
                      "cached": result.cached, "kept": result.kept.tolist() == list(range(rows)),
                      "sums": result.features.sum(axis=1, dtype="float64").tolist()[::1000],
                      "loaded": "efficientnet_lite_pytorch" in sys.modules}))
""")


def test_a_large_all_cached_lookup_holds_no_object_per_row(tmp_path):
    cache = tmp_path / "cache"
    spec = resolve_model(DEFAULT_MODEL, None)
    handle = open_cache(cache, spec.name, spec.weights, "fp32")
    rng = np.random.default_rng(1)
    sums = []
    for start in range(0, ROWS, 50_000):
        block = rng.standard_normal((50_000, DIM), dtype=np.float32)
        sums.append(block.sum(axis=1, dtype=np.float64))
        handle.store([(f"\0row {start + i}".encode(), 0, 0, block[i]) for i in range(len(block))])
    handle.close()
    del block

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROWS), str(cache)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["shape"] == [ROWS, DIM] and found["cached"] == ROWS and found["kept"]
    assert not found["loaded"]                              # every row cached: the encoder never loaded
    np.testing.assert_allclose(found["sums"], np.concatenate(sums)[::1000], rtol=1e-6)
    # Measured (2026-12-02, this machine, this child): the code before (a dict of per-row arrays, then np.stack)
    # grew by 2.43× the matrix (its quadratic lookup took 462 s at 100,000 rows); streamed into one matrix, 1.20×.
    assert found["growth"] < 1.6 * found["bytes"], found


def test_a_cache_that_cannot_be_read_is_left_out_with_one_warning(tmp_path, images, caplog):
    cache = tmp_path / "cache"
    open_cache(cache, "m", "w").close()
    with sqlite3.connect(cache / "embeddings.sqlite3") as con:   # the cache's table, without the cache's columns
        (table,) = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'embeddings_v*'"
                               ).fetchone()
        con.execute(f"DROP TABLE {table}")
        con.execute(f"CREATE TABLE {table} (model TEXT, weights TEXT, path BLOB)")
    con.close()
    with caplog.at_level("WARNING", logger=cache_module.__name__):
        result = embed_images(images["good"][:2], cache_dir=cache, progress=False)
    assert "cannot be read" in caplog.text and "embedding without it" in caplog.text
    assert result.cached == 0 and result.kept.tolist() == [0, 1]
    np.testing.assert_allclose(result.features, images["reference"][:2], rtol=1e-4, atol=1e-4)
