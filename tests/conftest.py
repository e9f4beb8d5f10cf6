"""Shared test settings: few CPU threads, deterministic seeds; running real processes (torchrun)."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import ivideogpt

SRC = Path(ivideogpt.__file__).resolve().parents[1]  # the code under test, for the processes it starts

torch.set_num_threads(int(os.environ.get("IVIDEOGPT_TEST_THREADS", "2")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped where no CUDA device is (CI); `benchmarks/gpu_figures.sh tests` runs them."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory) -> None:
    """Token caches and other cached files go to a temporary folder, never to the user's ~/.cache."""
    os.environ["IVIDEOGPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


def _launch(args: list, processes: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    command = [*(launcher if processes > 1 else [sys.executable]), *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _run_processes(args: list, processes: int = 1, timeout: float = 300) -> str:
    done = _launch(args, processes, timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def launch() -> Callable[..., subprocess.CompletedProcess]:
    """`launch([script or "-m", module, *args], processes=1)`: as `run_processes`, with the launcher's own settings,
    but returns the finished launch, succeeded or not."""
    return _launch


@pytest.fixture(scope="session")
def run_processes() -> Callable[..., str]:
    """`run_processes([script or "-m", module, *args], processes=1)`: Python as that many real processes
    (torchrun for several: gloo on the CPU, GPU or not); asserts that it succeeded, returns its stdout."""
    return _run_processes


class ReplayingGraph:
    """A CPU stand-in for a CUDA graph (`transformer/frame_graph.py`'s `CudaGraph`), with its contract.

    Outputs are the tensors the capture returned, rewritten by every replay; inputs are read from the
    buffers the capture saw. `captures` counts captures per subclass.
    """

    captures = 0

    def capture(self, run: Callable) -> tuple:
        type(self).captures += 1
        self.run = run
        self.outputs = run()
        return self.outputs

    def replay(self) -> None:
        for fixed, new in zip(self.outputs, self.run()):
            fixed.copy_(new)


@pytest.fixture
def replaying_graph() -> type[ReplayingGraph]:
    """A fresh `ReplayingGraph` class (its capture count starts at 0), to pass as a `graph_factory`."""
    return type("CountedReplayingGraph", (ReplayingGraph,), {"captures": 0})
