"""Shared test settings: small thread counts so the suite stays fast on 2 cores."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} (the shared sample data) is not beside this checkout")
    return SHARED


def pytest_collection_modifyitems(config, items):
    """Executing a whole notebook is slow: such tests get the `slow` marker, so `-m "not slow"` (the
    lowest-versions CI job, quick local runs) leaves them out. Multi-process tests mark themselves."""
    for item in items:
        if item.path.name.startswith("test_notebook0") or "notebook0" in item.name:
            item.add_marker(pytest.mark.slow)
