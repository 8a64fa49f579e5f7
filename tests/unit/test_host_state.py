"""Process-wide state belongs to whoever owns the process: library calls leave it alone, the command line tunes its own.

glibc's malloc thresholds (``embeddings/heap.py``) and torch's thread count
(``devices.threads_for``) are changed only inside
``devices.process_tuning``, which every ``activeft`` command enters for its own
process (issue 24, section 4: the FiftyOne App runs the operators inside its
server's process).  ``activeft --help`` still imports no torch although the
root group opens that block (``test_cli.py``,
``test_help_of_every_command_group_does_not_import_torch``).  Real encoder, real images, real selections; the only spy
records torch.set_num_threads's calls and forwards them.
"""

import os
import platform

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from activeft_label import embed_images, select
from activeft_label.cli import main
from activeft_label.devices import process_tuning, process_tuning_enabled, threads_for
from activeft_label.embeddings import heap

GLIBC = platform.libc_ver()[0] == "glibc"
#: A pool whose ActiveFT steps are far below SMALL_STEP_WORK (2,000 × 20 × 32): the command line uses one thread.
N, DIM, BUDGET = 2000, 32, 20


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """Six small real PNG images (discs and squares in three colours)."""
    folder = tmp_path_factory.mktemp("host-state-images")
    paths = []
    for k, colour in enumerate([(220, 30, 30), (30, 160, 40), (30, 30, 220)]):
        for shape in ("disc", "square"):
            image = Image.new("RGB", (64, 64), "white")
            draw = ImageDraw.Draw(image)
            (draw.ellipse if shape == "disc" else draw.rectangle)((12 + k, 12, 52, 52 - k), fill=colour)
            path = folder / f"{shape}_{k}.png"
            image.save(path)
            paths.append(str(path))
    return paths


@pytest.fixture
def two_threads_and_a_spy(monkeypatch):
    """torch at two threads (threads_for's rule then has something to change); record set_num_threads's calls."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    calls = []
    real = torch.set_num_threads

    def recording(count):
        calls.append(count)
        real(count)

    monkeypatch.setattr(torch, "set_num_threads", recording)
    yield calls
    monkeypatch.undo()
    torch.set_num_threads(before)


def clustered(n=N, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    return (centers[rng.integers(0, 10, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def test_library_calls_leave_torch_threads_and_glibc_alone(pngs, two_threads_and_a_spy):
    calls = two_threads_and_a_spy
    applied = heap.times_applied()
    result = embed_images(pngs, device="cpu", cache_dir=False, progress=False)
    assert result.features.shape[0] == len(pngs)
    picked = select(clustered(), BUDGET, iterations=20, device="cpu")
    assert len(picked.indices) == BUDGET
    assert calls == [] and torch.get_num_threads() == 2           # never changed, not even for a while
    assert heap.times_applied() == applied                         # glibc's thresholds never touched
    assert not process_tuning_enabled()


def test_the_same_calls_inside_process_tuning_tune_and_restore(pngs, two_threads_and_a_spy):
    """What the command line gets: one thread for the small selection, then two again; the heap raised on glibc."""
    calls = two_threads_and_a_spy
    applied = heap.times_applied()
    with process_tuning():
        assert process_tuning_enabled()
        embed_images(pngs, device="cpu", cache_dir=False, progress=False)
        select(clustered(), BUDGET, iterations=20, device="cpu")
    assert not process_tuning_enabled()
    assert calls == [1, 2] and torch.get_num_threads() == 2
    assert heap.times_applied() == applied + (1 if GLIBC else 0)


def test_threads_for_changes_nothing_outside_process_tuning(two_threads_and_a_spy):
    calls = two_threads_and_a_spy
    with threads_for(torch.device("cpu"), 1e6):
        assert torch.get_num_threads() == 2
    assert calls == []


def test_process_tuning_nests_and_closes_on_errors():
    assert not process_tuning_enabled()
    with process_tuning():
        with pytest.raises(RuntimeError):
            with process_tuning():
                raise RuntimeError("inner failure")
        assert process_tuning_enabled()
    assert not process_tuning_enabled()


def test_the_command_line_tunes_its_own_process_while_a_command_runs(pngs, tmp_path, two_threads_and_a_spy):
    """`activeft embed` raises glibc's thresholds; `activeft select` on a small pool runs on one thread; both end."""
    calls = two_threads_and_a_spy
    applied = heap.times_applied()
    runner = CliRunner()
    out = runner.invoke(main, ["embed", os.path.dirname(pngs[0]), "--out", str(tmp_path / "f.npz"), "--no-cache",
                               "--device", "cpu", "-q"])
    assert out.exit_code == 0, out.output
    assert heap.times_applied() == applied + (1 if GLIBC else 0)
    assert calls == [] and not process_tuning_enabled()            # embedding sets no threads; the block closed
    np.save(tmp_path / "pool.npy", clustered())
    out = runner.invoke(main, ["select", str(tmp_path / "pool.npy"), "-b", str(BUDGET), "--iters", "20",
                               "--device", "cpu", "-q", "--out", str(tmp_path / "s.csv")])
    assert out.exit_code == 0, out.output
    assert calls == [1, 2] and torch.get_num_threads() == 2
    assert not process_tuning_enabled()

