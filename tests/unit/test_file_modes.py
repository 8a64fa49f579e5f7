"""Output files get the permissions the umask gives a new file, and a replaced file keeps its own (issue 24,
item 6)."""

import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from activeft_label.cli import main
from activeft_label.files.demo import write_pngs
from activeft_label.files.output import write_atomic


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)            # this test's own setting, restored after it
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_what_the_umask_leaves_and_a_replaced_one_keeps_its_mode(tmp_path, umask):
    write_atomic(tmp_path / "new.csv", "a\n")
    assert mode(tmp_path / "new.csv") == 0o666 & ~umask
    kept = tmp_path / "kept.csv"
    kept.write_text("old\n")
    os.chmod(kept, 0o640)
    write_atomic(kept, b"new\n", mode="wb")
    assert kept.read_text() == "new\n" and mode(kept) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["kept.csv", "new.csv"]     # no temporary file left behind


def test_every_file_the_commands_write_gets_the_umask_mode(tmp_path, umask):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(60, 6)).astype(np.float32))
    result = CliRunner().invoke(main, ["select", str(tmp_path / "f.npy"), "-b", "5", "-q", "--method", "random",
                                       "--out", str(tmp_path / "selection.json"), "--plot", str(tmp_path / "map.png")])
    assert result.exit_code == 0, result.output
    for name in ("selection.json", "map.png"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name
    paths = write_pngs(np.zeros((3, 8, 8), dtype=np.uint8), tmp_path / "images")
    assert [mode(p) for p in paths] == [0o666 & ~umask] * 3


def test_embed_writes_features_with_the_umask_mode(tmp_path, umask):
    write_pngs(np.arange(2 * 32 * 32, dtype=np.uint8).reshape(2, 32, 32), tmp_path / "images")
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "images"), "-q", "--out", str(tmp_path / "f.npz")])
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "f.npz") == 0o666 & ~umask
