"""bench/compare_revisions.py end to end on a tiny pool: an earlier revision of the optimizer beside this tree."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _has_history():
    proc = subprocess.run(["git", "rev-parse", "--verify", "4514c9a~1"], cwd=ROOT, capture_output=True)
    return proc.returncode == 0


@pytest.mark.skipif(not _has_history(), reason="needs the git history (a clone, not an sdist)")
def test_compare_revisions_runs_both_sides_and_reports_the_same_selection():
    # 4514c9a~1 is the optimizer before the symmetric centroid blocks: a real A/B, which must select the same samples.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "compare_revisions.py"), "--rev", "4514c9a~1",
                           "--n", "800", "--budget", "40", "--iterations", "10"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for loss in ("released", "paper"):
        assert proc.stdout.count(f"{loss} before:") == 2 and proc.stdout.count(f"{loss} after:") == 2
        assert f"{loss}: before" in proc.stdout and "same selection: True" in proc.stdout.split(f"{loss}: before")[1]


def test_compare_revisions_names_a_bad_revision():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "compare_revisions.py"), "--rev", "no-such-rev",
                           "--n", "100", "--budget", "5", "--iterations", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert "no-such-rev" in proc.stderr and "Traceback" not in proc.stderr
