"""`data check --deep`: episodes whose headers are fine but whose contents do not decode are found."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from ivideogpt.cli import main
from ivideogpt.data.config import DataConfig
from ivideogpt.data.index import build_index
from ivideogpt.media import write_video
from ivideogpt.data.verify import decode_all


def _noise(length: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(length).integers(0, 255, (length, size, size, 3), dtype=np.uint8)


def _damage(path, start: float, end: float) -> None:
    """Zero a span of a file's bytes (fractions of its size), leaving its headers at both ends intact."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * start):int(len(data) * end)] = bytes(int(len(data) * end) - int(len(data) * start))
    path.write_bytes(bytes(data))


@pytest.fixture
def data_root(tmp_path, write_episodes):
    write_episodes(tmp_path / "eps", 4)
    np.savez(tmp_path / "eps" / "stored.npz", frames=_noise(12, 16))  # uncompressed: checksums guard the data
    _damage(tmp_path / "eps" / "stored.npz", 0.4, 0.6)
    write_video(tmp_path / "clips" / "good.mp4", _noise(20))
    write_video(tmp_path / "clips" / "damaged.mp4", _noise(21))
    _damage(tmp_path / "clips" / "damaged.mp4", 0.25, 0.5)
    return tmp_path


def _config(root) -> DataConfig:
    return DataConfig(sources=[{"name": "eps", "path": str(root / "eps")},
                               {"name": "clips", "path": str(root / "clips"), "format": "video"}],
                      resolution=8, segment_length=4, val_fraction=0.2, actions="ignore")


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_all_finds_what_indexing_cannot(data_root, workers):
    index = build_index(_config(data_root))
    assert index.report.used == 7 and not index.report.skipped  # the headers are intact
    report = decode_all(index, workers=workers, progress=False)
    assert (report.found, report.used) == (7, 5)
    broken = {where: reason for where, kind, reason in report.skipped if kind == "undecodable"}
    assert set(broken) == {"eps/stored", "clips/damaged"}
    assert "video decoding failed" in broken["clips/damaged"] and "npz" in broken["eps/stored"]


def test_cli_check_deep(data_root, capsys):
    (data_root / "data.yaml").write_text(yaml.safe_dump({"data": {
        "segment_length": 4, "resolution": 8, "actions": "ignore",
        "sources": [{"name": "eps", "path": "eps"}, {"name": "clips", "path": "clips", "format": "video"}]}}))
    args = ["data", "check", str(data_root / "data.yaml"), f"root={data_root}", "--quiet"]
    assert main(args) == 0  # without --deep the damage is not seen
    capsys.readouterr()
    assert main(args + ["--deep", "--workers", "2", "--json"]) == 1
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["deep"]["decoded"] == 5
    assert sorted(b["episode"] for b in result["deep"]["broken"]) == ["clips/damaged", "eps/stored"]
    (data_root / "clips" / "damaged.mp4").unlink()
    (data_root / "eps" / "stored.npz").unlink()
    assert main(args + ["--deep"]) == 0
    assert "deep check: decoded 5 of 5 episodes" in capsys.readouterr().out
    with pytest.raises(ValueError, match="workers"):
        decode_all(build_index(_config(data_root)), workers=0)
