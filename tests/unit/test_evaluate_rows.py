"""`activeft evaluate` names bad feature rows by their row in the file, as `activeft select` does (issue 24,
item 2)."""

import numpy as np
from click.testing import CliRunner

from activeft_label.cli import main


def _pool(tmp_path, nan_rows, n=300):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[nan_rows, 1] = np.nan
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", rng.integers(0, 3, n))
    return x


def _evaluate(tmp_path, *extra):
    return CliRunner().invoke(main, ["evaluate", "--features", str(tmp_path / "f.npy"), "--labels",
                                     str(tmp_path / "y.npy"), "-b", "5", "--methods", "random", "--seeds", "1",
                                     *extra])


def test_nan_rows_are_reported_by_their_row_in_the_features_file(tmp_path):
    _pool(tmp_path, [3, 50, 199])
    result = _evaluate(tmp_path)
    assert result.exit_code == 2, result.output
    assert "in 3 row(s) (first: 3, 50, 199)" in result.output and "Traceback" not in result.output
    select = CliRunner().invoke(main, ["select", str(tmp_path / "f.npy"), "-b", "5", "-q",
                                       "--out", str(tmp_path / "s.csv")])
    assert select.exit_code == 2 and "(first: 3, 50, 199)" in select.output


def test_a_nan_row_that_the_held_out_split_would_take_is_still_a_pool_row(tmp_path):
    _pool(tmp_path, [105])
    result = _evaluate(tmp_path)
    assert result.exit_code == 2, result.output
    assert "in 1 row(s) (first: 105)" in result.output
    assert "test features" not in result.output


def test_nan_in_a_given_test_file_is_reported_by_its_row_there(tmp_path):
    x = _pool(tmp_path, [])
    test = x[:20].copy()
    test[4, 0] = np.nan
    np.save(tmp_path / "tx.npy", test)
    np.save(tmp_path / "ty.npy", np.zeros(20, dtype=np.int64))
    result = _evaluate(tmp_path, "--test-features", str(tmp_path / "tx.npy"), "--test-labels",
                       str(tmp_path / "ty.npy"))
    assert result.exit_code == 2, result.output
    assert "test features contain NaN or infinite values in 1 row(s) (first: 4)" in result.output
