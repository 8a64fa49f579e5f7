"""A subfolder that cannot be listed is reported like an unreadable image, not skipped in silence (issue 24,
item 3).

As root every permission check passes, so the folder here is one that no one can list: a path longer than the
system's limit (PATH_MAX, 4096 bytes on Linux), built one component at a time through directory descriptors.
"""

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from activeft_label.cli import main
from activeft_label.errors import InputError
from activeft_label.files.sources import list_images


def _png(path, value):
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path)


def _too_deep(root, depth=22):
    """``root``/d…/d…/… with an image at the bottom, deeper than any path may be; returns its first folder."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open("deep.png", "wb", opener=lambda name, flags: os.open(name, flags, 0o666, dir_fd=fd)) as handle:
            handle.write(b"never listed")
    finally:
        os.close(fd)
    return os.path.join(root, "d" * 200)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    _png(root / "a.png", 10)
    _png(root / "b.png", 200)
    first = _too_deep(str(root))
    yield root
    shutil.rmtree(first)              # descriptor-based, so it can remove what no path can name


def test_a_folder_that_cannot_be_listed_is_handed_back_with_its_reason(folder):
    skipped = []
    found = list_images(folder, skipped=skipped)
    assert found == [str(folder / "a.png"), str(folder / "b.png")]
    assert len(skipped) == 1
    path, reason = skipped[0]
    assert path.startswith(str(folder / ("d" * 200))) and len(path) > 4096
    assert reason == "folder cannot be listed (File name too long)"
    assert list_images(folder) == found                  # without a list, the listing is the same


def test_the_command_line_reports_it_with_the_unreadable_images(folder, tmp_path):
    result = CliRunner().invoke(main, ["embed", str(folder), "-q", "--out", str(tmp_path / "f.npz")])
    assert result.exit_code == 0, result.output
    assert "Skipped 1 unreadable item(s): " in result.stderr
    assert "folder cannot be listed (File name too long)" in result.stderr
    assert np.load(tmp_path / "f.npz")["features"].shape[0] == 2


def test_no_images_outside_an_unlistable_folder_says_why(tmp_path):
    root = tmp_path / "only_deep"
    root.mkdir()
    first = _too_deep(str(root))
    try:
        with pytest.raises(InputError, match=r"no images found .*1 subfolder\(s\) could not be listed"):
            list_images(root)
    finally:
        shutil.rmtree(first)


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder whatever its permissions")
def test_a_folder_without_read_permission_is_reported(tmp_path):
    root = tmp_path / "images"
    (root / "locked").mkdir(parents=True)
    _png(root / "a.png", 10)
    _png(root / "locked" / "b.png", 10)
    os.chmod(root / "locked", 0)
    try:
        skipped = []
        assert list_images(root, skipped=skipped) == [str(root / "a.png")]
        assert skipped == [(str(root / "locked"), "folder cannot be listed (Permission denied)")]
        os.chmod(root, 0)
        with pytest.raises(InputError, match="cannot list folder"):
            list_images(root)
    finally:
        os.chmod(root, 0o755)
        os.chmod(root / "locked", 0o755)
