"""Shared test settings: few CPU threads, deterministic seeds."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("IVIDEOGPT_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory) -> None:
    """Token caches and other cached files go to a temporary folder, never to the user's ~/.cache."""
    os.environ["IVIDEOGPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
