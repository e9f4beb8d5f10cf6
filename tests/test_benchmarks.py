"""Every benchmark script starts: it imports and parses its arguments; the CPU kernels one also runs whole, quickly."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(p for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
                    if not p.name.startswith("_"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_script_starts(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=script.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_cpu_kernels_benchmark_runs_its_quick_setting() -> None:
    """The one benchmark cheap enough to run whole in CI (~45 s on 2 cores): every table row, on this CPU."""
    from ivideogpt.transformer.cpu_kernels import cpu_extension

    if cpu_extension() is None:
        pytest.skip("the CPU kernels are not available here")
    script = next(p for p in BENCHMARKS if p.name == "cpu_kernels.py")
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300,
                          cwd=script.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| small ops, bf16 | fused |" in done.stdout
