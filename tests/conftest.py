"""Shared test settings: few CPU threads, deterministic seeds."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("IVIDEOGPT_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
