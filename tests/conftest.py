from pathlib import Path

import pytest
import torch

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def faces_root() -> Path:
    """The real multi-domain faces shared beside the checkout (never copied into the repo)."""
    if not FACES.is_dir():
        pytest.skip(f"real face data not found at {FACES}")
    return FACES


@pytest.fixture
def faces_root_or_none() -> Path | None:
    return FACES if FACES.is_dir() else None
