"""The released-layout fixtures (`../shared/fixtures/official-tiny` beside the repository) and their reference outputs."""

from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "official-tiny"
VARIANTS = {"act-free": "free", "act-cond": "cond"}  # snapshot folder -> prefix of its reference arrays
CONTEXT = 2


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "reference.npz").is_file():
        pytest.skip(f"released-layout fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def reference(fixtures: Path) -> dict[str, torch.Tensor]:
    """reference.npz as tensors: video (2, 8, 3, 64, 64) in [0, 1], actions (2, 8, 4), tokens, labels, outputs."""
    with np.load(fixtures / "reference.npz") as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread, as the reference was computed: the fixture's random codebook has near-ties (two codes at
    distances equal to float32 precision, 2.4634368 for one context token of the second clip) that other
    thread counts' convolution rounding can flip; one flipped id then moves the logits by ~6e-4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
