"""Shared test set-up: no network, no telemetry, a fresh embedding cache per test, and the two kinds of test.

``tests/unit/`` holds the tests that need no server and no database: pure
code on generated arrays, plus the offline encoder and the command line on
image files the tests write (``python -m pytest tests -m unit``, about two
minutes here).  ``tests/integration/`` holds the tests against a real
FiftyOne database, a real Label Studio server, the App and a browser
(``-m integration``).  Each test gets its folder's marker.  Helpers shared by
both (``reference.py``, the dense ActiveFT yardstick; ``fiftyone_env.py``;
``labelstudio_server.py``) sit here, beside this file, which puts this folder
on ``sys.path``.
"""

import os

# Set before anything imports huggingface_hub / fiftyone, which read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"

import pytest  # noqa: E402

KINDS = {"unit": "needs no server and no database (pure code, the offline encoder, the CLI on files)",
         "integration": "runs against a real FiftyOne database, Label Studio server, App or browser"}


def pytest_configure(config):
    for name, meaning in KINDS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(config, items):
    """Mark each test with the kind its folder holds (tests/unit or tests/integration)."""
    for item in items:
        kind = item.path.parent.name
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))


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
