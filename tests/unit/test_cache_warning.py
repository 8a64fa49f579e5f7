"""An unusable --cache-dir is said in one clean line on stderr, and the host's warning set-up is left alone
(issue 24, item 4)."""

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
from PIL import Image

from activeft_label.embeddings.cache import open_cache


def test_embed_with_an_unusable_cache_dir_says_so_in_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    for k in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * k, dtype=np.uint8)).save(tmp_path / "images" / f"{k}.png")
    (tmp_path / "a_file").write_text("not a folder\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "activeft_label.cli", "embed", str(tmp_path / "images"), "-q",
                           "--cache-dir", str(tmp_path / "a_file" / "sub"), "--out", str(tmp_path / "f.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"embedding cache in {tmp_path / 'a_file' / 'sub'} cannot be used ([Errno 20] Not a "
                     f"directory: '{tmp_path / 'a_file' / 'sub'}'); embedding without a cache"], proc.stderr
    assert (tmp_path / "f.npz").is_file()


def test_the_library_tells_its_logger_and_changes_no_process_wide_setting(tmp_path, caplog):
    (tmp_path / "a_file").write_text("")
    show, filters = warnings.showwarning, list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="activeft_label"):
            assert open_cache(tmp_path / "a_file" / "sub", "model", "weights") is None
    assert not caught                                     # no Python warning with a file, line and source
    assert [r.name for r in caplog.records] == ["activeft_label.embeddings.cache"]
    assert "cannot be used" in caplog.records[0].getMessage()
    assert warnings.showwarning is show and warnings.filters == filters
