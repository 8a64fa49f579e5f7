"""Shared test set-up: no network, no telemetry, and a fresh embedding cache per test."""

import os

# Set before anything imports huggingface_hub / fiftyone, which read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _activeft_cache_dir(tmp_path, monkeypatch):
    """Point the embedding cache at a folder of this test's own."""
    cache = tmp_path / "activeft-cache"
    monkeypatch.setenv("ACTIVEFT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module whose tests run many tiny selections next to servers.

    On a busy 2-core machine two torch threads oversubscribe the cores and the
    optimizer's many small steps were measured ~20-50× slower than with one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
