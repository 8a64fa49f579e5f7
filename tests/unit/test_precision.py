"""The encoder's number format: what auto means per device, explicit choices, and the cache never mixing them."""

import os
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from activeft_label.embeddings import embed_images, load_encoder
from activeft_label.embeddings import precision as precision_module
from activeft_label.embeddings.cache import _CACHE_TABLE, open_cache
from activeft_label.embeddings.precision import native_bf16, resolve_precision
from activeft_label.errors import InputError

CPU = torch.device("cpu")
HAS_BF16 = native_bf16(CPU)[0]


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision_images")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):
        image = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 255, 3)))
        ImageDraw.Draw(image).ellipse((8 + k, 8, 40 + 3 * k, 56), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        path = folder / f"{k}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def test_auto_is_fp32_on_every_device_whatever_the_cpu_reports():
    # bf16 moved features too far (min cosine 0.944 against fp32, bench/QUALITY.md) for a default.
    for flags in ({"avx2", "avx512f", "avx512_bf16"}, {"avx2", "amx_tile", "amx_bf16"}, {"avx2"}, None):
        assert resolve_precision("auto", CPU, flags=flags) == "fp32"
    assert resolve_precision("auto", torch.device("mps"), flags={"avx512_bf16"}) == "fp32"


def test_native_bf16_is_what_the_cpu_reports():
    assert native_bf16(CPU, flags={"avx2", "avx512f", "avx512_bf16"})[0]
    assert native_bf16(CPU, flags={"amx_tile", "amx_bf16"})[0]
    native, why = native_bf16(CPU, flags={"avx2", "avx512f", "fma"})
    assert not native and "neither avx512_bf16 nor amx_bf16" in why
    assert not native_bf16(torch.device("mps"))[0]


def test_explicit_values_are_honoured_and_an_unsupported_bf16_says_why():
    assert resolve_precision("fp32", CPU, flags={"avx512_bf16"}) == "fp32"
    assert resolve_precision("bf16", CPU, flags={"amx_bf16"}) == "bf16"
    with pytest.raises(InputError, match="neither avx512_bf16 nor amx_bf16.*use --precision fp32"):
        resolve_precision("bf16", CPU, flags={"avx2"})
    with pytest.raises(InputError, match="unknown precision 'fp16'; choose one of: auto, fp32, bf16"):
        resolve_precision("fp16", CPU)


def test_cpu_flags_are_read_from_this_machine():
    flags = precision_module.cpu_flags()
    if os.path.exists("/proc/cpuinfo"):
        assert flags and "fpu" in flags        # every x86 CPU reports it; the set is this machine's
    assert native_bf16(CPU)[0] == bool(flags and flags & {"avx512_bf16", "amx_bf16"})


def test_the_encoder_runs_in_the_precision_it_reports(image_paths):
    fp32 = embed_images(image_paths, cache_dir=False, progress=False, precision="fp32")
    assert fp32.precision == "fp32" and fp32.layout == "fp32, channels_last"
    encoder = load_encoder(device="cpu", precision="fp32")
    assert encoder.precision == "fp32" and encoder.channels_last
    # channels_last changes the order of the sums only
    again = embed_images(image_paths, encoder, cache_dir=False, progress=False)
    np.testing.assert_allclose(again.features, fp32.features, rtol=1e-4, atol=1e-4)
    if HAS_BF16:
        bf16 = embed_images(image_paths, encoder, cache_dir=False, progress=False, precision="bf16")
        assert bf16.precision == "bf16" and bf16.features.dtype == np.float32
        assert not np.array_equal(bf16.features, fp32.features)
        cosine = np.sum(bf16.features * fp32.features, 1) / np.linalg.norm(bf16.features, axis=1) \
            / np.linalg.norm(fp32.features, axis=1)
        assert cosine.min() > 0.98


@pytest.mark.skipif(HAS_BF16, reason="this CPU computes bf16: the refusal is for CPUs without it")
def test_bf16_on_a_cpu_without_it_is_refused_before_any_image_is_read(tmp_path, image_paths):
    with pytest.raises(InputError, match="not available here"):
        embed_images(image_paths, cache_dir=tmp_path / "cache", progress=False, precision="bf16")
    assert not (tmp_path / "cache").exists()


def test_the_cache_keys_rows_by_precision(tmp_path):
    key = (b"/images/a.png", 10, 123)
    fp32 = open_cache(tmp_path, "m", "w", "fp32")
    fp32.store([(*key, np.ones(4, dtype=np.float32)), (b"/images/broken.png", 5, 1, "not an image")])
    fp32.close()
    bf16 = open_cache(tmp_path, "m", "w", "bf16")
    found, failed = bf16.lookup([(0, *key), (1, b"/images/broken.png", 5, 1)])
    assert found == {} and failed == {1: "not an image"}    # a bf16 run never gets an fp32 vector
    bf16.store([(*key, np.full(4, 2.0, dtype=np.float32))])
    found, _ = bf16.lookup([(0, *key)])
    bf16.close()
    assert found[0].tolist() == [2.0] * 4
    fp32 = open_cache(tmp_path, "m", "w", "fp32")
    found, _ = fp32.lookup([(0, *key)])
    fp32.close()
    assert found[0].tolist() == [1.0] * 4                   # and the reverse: both rows live side by side


def test_end_to_end_a_second_precision_embeds_again_and_each_reuses_its_own(tmp_path, image_paths):
    cache = tmp_path / "cache"
    first = embed_images(image_paths, cache_dir=cache, progress=False, precision="fp32")
    assert first.cached == 0
    assert embed_images(image_paths, cache_dir=cache, progress=False, precision="fp32").cached == len(image_paths)
    if HAS_BF16:
        other = embed_images(image_paths, cache_dir=cache, progress=False, precision="bf16")
        assert other.cached == 0 and other.precision == "bf16"
        reused = embed_images(image_paths, cache_dir=cache, progress=False, precision="bf16")
        assert reused.cached == len(image_paths)
        np.testing.assert_array_equal(reused.features, other.features)
    with sqlite3.connect(cache / "embeddings.sqlite3") as con:
        kinds = sorted(p for (p,) in con.execute(f"SELECT DISTINCT precision FROM {_CACHE_TABLE}"))
    con.close()
    assert kinds == (["bf16", "fp32"] if HAS_BF16 else ["fp32"])


def test_an_older_cache_keeps_its_rows_as_fp32(tmp_path, image_paths):
    cache = tmp_path / "cache"
    first = embed_images(image_paths, cache_dir=cache, progress=False, precision="fp32")
    db = cache / "embeddings.sqlite3"
    with sqlite3.connect(db) as con:            # the table as the release before precision keys wrote it
        con.execute("CREATE TABLE embeddings_v2 (model TEXT NOT NULL, weights TEXT NOT NULL, path BLOB NOT NULL, "
                    "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
                    "PRIMARY KEY (model, weights, path))")
        con.execute(f"INSERT INTO embeddings_v2 SELECT model, weights, path, size, mtime_ns, dim, vector "
                    f"FROM {_CACHE_TABLE}")
        con.execute(f"DROP TABLE {_CACHE_TABLE}")
    con.close()
    again = embed_images(image_paths, cache_dir=cache, progress=False, precision="fp32")
    assert again.cached == len(image_paths)
    np.testing.assert_array_equal(again.features, first.features)
    with sqlite3.connect(db) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert tables == {_CACHE_TABLE}


def test_the_command_line_reports_the_precision_and_refuses_an_unsupported_bf16(tmp_path, image_paths,
                                                                                monkeypatch):
    from activeft_label.cli import main

    folder = os.path.dirname(image_paths[0])
    runner = CliRunner()
    out = tmp_path / "f.npz"
    result = runner.invoke(main, ["embed", folder, "-o", str(out), "--precision", "fp32", "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    assert "in fp32 into" in result.output
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))
    result = runner.invoke(main, ["embed", folder, "-o", str(tmp_path / "g.npz"), "--no-cache", "-q"],
                           env={"ACTIVEFT_PRECISION": "bf16"})
    assert result.exit_code == 2, result.output
    assert "--precision bf16 is not available here" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "g.npz").exists()
