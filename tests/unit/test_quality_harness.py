"""The quality benchmark's harness end to end, on a tiny generated pool (the real run is in bench/)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_tiny_features(path, seed, classes, dim, train, test):
    """A features file like bench/fashion_features.py writes: separable clusters, one per class."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    train_y, test_y = rng.integers(0, classes, train), rng.integers(0, classes, test)
    np.savez(path,
             train_features=(centers[train_y] + 0.6 * rng.normal(size=(train, dim))).astype(np.float32),
             train_labels=train_y,
             test_features=(centers[test_y] + 0.6 * rng.normal(size=(test, dim))).astype(np.float32),
             test_labels=test_y)


def test_quality_benchmark_runs_end_to_end(tmp_path):
    write_tiny_features(tmp_path / "tiny.npz", seed=0, classes=10, dim=24, train=1200, test=300)
    out, plot = tmp_path / "QUALITY.md", tmp_path / "quality.png"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "selection_quality.py"), "--quick",
                           "--taus", "0.07,0.2", "--features", str(tmp_path / "tiny.npz"), "--out", str(out), "--plot", str(plot)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text()
    for name in ["random", "kmeans", "coreset", "probcover", "typiclust", "activeft (paper)", "activeft (released)"]:
        assert f"| {name} |" in report
    assert "chosen on the validation split" in report
    assert plot.stat().st_size > 1000
    # Separable clusters: every method's accuracy cell parses and ActiveFT is far above chance.
    row = next(line for line in report.splitlines() if line.startswith("| activeft (released) |"))
    first_cell = float(row.split("|")[2].split("±")[0])
    assert first_cell > 30.0


def test_a_setting_given_with_chosen_is_used_and_reported(tmp_path):
    write_tiny_features(tmp_path / "tiny.npz", seed=1, classes=6, dim=16, train=800, test=200)
    out = tmp_path / "QUALITY.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "selection_quality.py"), "--quick",
                           "--only-activeft", "--chosen", "paper:0.07:0.01", "--center",
                           "--features", str(tmp_path / "tiny.npz"),
                           "--out", str(out), "--plot", ""],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text()
    assert "| activeft (paper, τ=0.07, λ=0.01) |" in report
    assert "| activeft (released) |" in report and "| activeft (paper) |" not in report
    assert "(paper loss): (0.07, 0.01), given with --chosen" in report
    assert "Every method selected on centred features" in report


def test_budgets_baselines_and_probe_c_restrict_the_run_and_are_reported(tmp_path):
    write_tiny_features(tmp_path / "tiny.npz", seed=2, classes=5, dim=12, train=800, test=200)
    out = tmp_path / "QUALITY.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "selection_quality.py"), "--quick",
                           "--budgets", "2%", "--baselines", "random,kmeans", "--probe-c", "3",
                           "--losses", "released", "--features", str(tmp_path / "tiny.npz"),
                           "--out", str(out), "--plot", ""],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text()
    table = report.split("Coverage")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["method", "random", "kmeans", "activeft (released)"]
    header = next(line for line in table.splitlines() if line.startswith("| method |"))
    assert header.count("B = ") == 1 and "B = 14 " in header      # 2% of the 720-image quick pool
    assert "C: 3.0, given with --probe-c" in report


def test_an_unknown_baseline_is_refused_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "selection_quality.py"),
                           "--baselines", "random,kmeens", "--features", str(tmp_path / "missing.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "kmeens" in proc.stderr and "Traceback" not in proc.stderr


def test_class_balance_diagnostic_draws_equal_classes_and_runs(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from class_balance_check import balanced_pick

    labels = np.repeat(np.arange(4), [50, 10, 30, 200])
    pick = balanced_pick(labels, 22, np.random.default_rng(0))
    counts = np.bincount(labels[pick], minlength=4)
    assert len(set(pick.tolist())) == 22 and counts.sum() == 22
    assert counts.max() - counts.min() <= 1                   # 22 = 4 × 5 + 2

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tiny.npz", train_features=rng.normal(size=(3000, 8)).astype(np.float32),
             train_labels=rng.integers(0, 3, 3000), test_features=rng.normal(size=(200, 8)).astype(np.float32),
             test_labels=rng.integers(0, 3, 200))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "class_balance_check.py"), "--features",
                           str(tmp_path / "tiny.npz"), "--seeds", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| 14 (0.5%) |" in proc.stdout and "| 54 (2%) |" in proc.stdout


def run_ablation(tmp_path, *options):
    write_tiny_features(tmp_path / "tiny.npz", seed=1, classes=10, dim=24, train=1200, test=300)
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "validation_ablation.py"), "--quick",
                           "--seeds", "1", "--budget", "5%", "--features", str(tmp_path / "tiny.npz"), *options],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def table_rows(stdout):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]


def test_validation_ablation_runs_end_to_end(tmp_path):
    proc = run_ablation(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *rows = table_rows(proc.stdout)
    assert len(rows) == 9                    # six ActiveFT variants (λ = 0.5 and 2 among them), three baselines
    names = [row[0] for row in rows]
    assert any("k-means++ start" in name for name in names) and names[-3:] == ["kmeans", "typiclust", "random"]
    assert sum("λ = " in name for name in names) == 2
    assert sum("update released" in name for name in names) == 1
    budget = 45                              # 5% of the 900 pool rows (--quick keeps 1,000, validation takes 100)
    for row in rows[:6]:                     # ActiveFT rows count the centroids that shared a nearest sample
        assert 0 <= float(row[3]) <= budget
    assert all(row[3] == "—" for row in rows[6:])


def test_validation_ablation_runs_only_the_chosen_variants(tmp_path):
    proc = run_ablation(tmp_path, "--variants", "balance", "--balances", "3", "--temperature", "0.1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ActiveFT τ = 0.1:" in proc.stdout
    header, *rows = table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["ActiveFT released, 30 iterations, λ = 3"]
    proc = run_ablation(tmp_path, "--variants", "default", "--loss", "paper", "--center")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "every row on centred features" in proc.stdout
    header, *rows = table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["ActiveFT paper, 30 iterations, uniform start"]


def test_whitening_gives_uncorrelated_unit_variance_components():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from validation_ablation import whitened

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) + 3.0      # correlated, off-centre
    w = whitened(x, 5)
    assert w.shape == (500, 5) and w.dtype == np.float32
    np.testing.assert_allclose(np.cov(w, rowvar=False, bias=True), np.eye(5), atol=1e-5)
    # The first component is the direction of largest variance of the original rows.
    top = np.linalg.eigh(np.cov(x, rowvar=False))[1][:, -1]
    assert abs(np.corrcoef(w[:, 0], x @ top)[0, 1]) > 0.9999
    # Components without variance cannot be scaled to unit variance: refused, not divided by zero.
    flat = np.hstack([x[:, :3], x[:, :3] * 2.0])                           # rank 3 in 6 columns
    with pytest.raises(ValueError, match="only 3 principal components"):
        whitened(flat, 4)


def test_validation_ablation_selects_on_whitened_features(tmp_path):
    proc = run_ablation(tmp_path, "--variants", "default,baselines", "--whiten", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "every row selecting on the top 6 principal components, whitened" in proc.stdout
    plain = run_ablation(tmp_path, "--variants", "default,baselines")
    whitened_rows, plain_rows = table_rows(proc.stdout)[1:], table_rows(plain.stdout)[1:]
    assert [r[0] for r in whitened_rows] == [r[0] for r in plain_rows]
    # Coverage is measured on the features the selection saw, so it moves with them (random's picks do not).
    assert whitened_rows[0][2] != plain_rows[0][2]
    proc = run_ablation(tmp_path, "--whiten", "500")
    assert proc.returncode == 2 and "--whiten takes 0 (off)" in proc.stderr and "Traceback" not in proc.stderr


def test_validation_ablation_names_a_bad_variant(tmp_path):
    proc = run_ablation(tmp_path, "--variants", "default,tau")
    assert proc.returncode == 2
    assert "unknown variant(s) tau" in proc.stderr and "Traceback" not in proc.stderr
