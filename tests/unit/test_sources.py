"""Listing image files and loading precomputed features."""

import os

import numpy as np
import pytest
from PIL import Image

from activeft_label.errors import InputError
from activeft_label.files.sources import IMAGE_EXTENSIONS, is_features_file, list_images, load_features


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, format="PNG")
    return str(path)


def test_folder_is_searched_recursively_and_sorted(tmp_path):
    root = tmp_path / "data"
    expected = [
        _image(root / "a.png"),
        _image(root / "b.JPG"),
        _image(root / "sub" / "c.jpeg"),
        _image(root / "sub" / "deeper" / "d.WebP"),
        _image(root / "z" / "e.tiff"),
    ]
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "labels.json").write_text("{}")
    _image(root / ".hidden" / "skipped.png")
    _image(root / "sub" / ".also_hidden.png")
    (root / "dir.png").mkdir()  # a folder with an image-like name is not a file
    found = list_images(root)
    assert found == sorted(os.path.abspath(p) for p in expected)
    assert all(os.path.isabs(p) for p in found)
    assert list_images(str(root)) == found


def test_extensions_are_case_insensitive(tmp_path):
    for ext in sorted(IMAGE_EXTENSIONS):
        (tmp_path / f"x{ext.upper()}").write_bytes(b"")
        (tmp_path / f"y{ext}").write_bytes(b"")
    (tmp_path / "z.svg").write_bytes(b"")
    assert len(list_images(tmp_path)) == 2 * len(IMAGE_EXTENSIONS)


def test_list_file_with_relative_paths_and_comments(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = _image(tmp_path / "elsewhere" / "abs.png")
    list_file = lists / "todo.txt"
    list_file.write_text(
        "# images to consider\n"
        "\n"
        "imgs/one.png\n"
        "   ../elsewhere/two.jpg   \n"
        f"{absolute}\n"
        "# imgs/commented.png\n"
        "imgs/one.png\n"  # listed twice: kept once
        "not_an_image_suffix.dat\n"
    )
    found = list_images(list_file)
    assert found == [
        str(lists / "imgs" / "one.png"),
        str(tmp_path / "elsewhere" / "two.jpg"),
        absolute,
        str(lists / "not_an_image_suffix.dat"),
    ]


def test_list_file_resolution_does_not_depend_on_cwd(tmp_path, monkeypatch):
    (tmp_path / "l.txt").write_text("pic.png\n")
    monkeypatch.chdir("/")
    assert list_images(tmp_path / "l.txt") == [str(tmp_path / "pic.png")]


def test_empty_folder_and_empty_list_are_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("hi")
    with pytest.raises(InputError, match=r"no images found.*\.jpg"):
        list_images(empty)
    only_comments = tmp_path / "list.txt"
    only_comments.write_text("# nothing here\n\n   \n")
    with pytest.raises(InputError, match="names no image paths"):
        list_images(only_comments)


def test_missing_source_and_binary_list(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_images(tmp_path / "nope")
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(128, 256)))
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        list_images(binary)
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match="feature file"):
        list_images(tmp_path / "f.npy")


def test_single_image_file(tmp_path):
    path = _image(tmp_path / "one.png")
    assert list_images(path) == [path]


def test_is_features_file():
    assert is_features_file("x.npy") and is_features_file("a/b.NPZ")
    assert not is_features_file("x.png") and not is_features_file("npy")


def test_load_npy(tmp_path):
    array = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "f.npy", array)
    features, ids = load_features(tmp_path / "f.npy")
    assert features.dtype == np.float32 and features.flags.c_contiguous
    np.testing.assert_array_equal(features, array.astype(np.float32))
    assert ids == ["0", "1", "2", "3"]


def test_load_npz_with_and_without_ids(tmp_path):
    array = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    np.savez(tmp_path / "a.npz", features=array, ids=np.array(["img_a", "img_b", "img_c"]), extra=np.ones(7))
    features, ids = load_features(str(tmp_path / "a.npz"))
    np.testing.assert_array_equal(features, array)
    assert ids == ["img_a", "img_b", "img_c"]

    np.savez_compressed(tmp_path / "b.npz", features=array, ids=np.array([10, 20, 30]))
    assert load_features(tmp_path / "b.npz")[1] == ["10", "20", "30"]

    np.savez(tmp_path / "c.npz", features=array)
    assert load_features(tmp_path / "c.npz")[1] == ["0", "1", "2"]


def test_npz_without_features_names_the_arrays_found(tmp_path):
    np.savez(tmp_path / "bad.npz", embeddings=np.zeros((2, 2)), names=np.array(["a", "b"]))
    with pytest.raises(InputError, match=r"no array named 'features'.*'embeddings'.*'names'"):
        load_features(tmp_path / "bad.npz")


def test_ids_length_mismatch(tmp_path):
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 2)), ids=np.array(["a", "b"]))
    with pytest.raises(InputError, match="2 entries but features has 3 rows"):
        load_features(tmp_path / "bad.npz")


def test_duplicate_ids(tmp_path):
    np.savez(tmp_path / "dup.npz", features=np.zeros((3, 2)), ids=np.array(["a", "b", "a"]))
    with pytest.raises(InputError, match="not unique"):
        load_features(tmp_path / "dup.npz")


def test_wrong_number_of_dimensions(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match=r"\(2, 3, 4\)"):
        load_features(tmp_path / "cube.npy")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(InputError, match=r"\(5,\)"):
        load_features(tmp_path / "flat.npy")
    np.savez(tmp_path / "cube.npz", features=np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match=r"\(2, 3, 4\)"):
        load_features(tmp_path / "cube.npz")


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_features(tmp_path / "missing.npy")
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"definitely not numpy")
    with pytest.raises(InputError, match="cannot read features"):
        load_features(garbage)
    garbage_npz = tmp_path / "garbage.npz"
    garbage_npz.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(InputError, match="cannot read features"):
        load_features(garbage_npz)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        load_features(tmp_path / "objects.npy")
    np.save(tmp_path / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match="must be numbers"):
        load_features(tmp_path / "strings.npy")
    with pytest.raises(InputError, match=".npy or .npz"):
        load_features(tmp_path / "features.csv")


def test_nan_rows_are_not_rejected_here(tmp_path):
    array = np.array([[np.nan, 1.0], [0.0, 0.0]])
    np.save(tmp_path / "nan.npy", array)
    features, _ = load_features(tmp_path / "nan.npy")
    assert features.shape == (2, 2)
