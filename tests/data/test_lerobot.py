"""LeRobot layouts v2.1 (per-episode files) and v3.0 (packed files), written here with pyarrow + PyAV."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ivideogpt.data.config import DataConfig
from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.index import build_index
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import detect_format, make_reader
from ivideogpt.media import write_video
from ivideogpt.data.verify import decode_all

CAMERA = "observation.images.top"
FPS = 10
LENGTHS = (6, 8)


def _frames(length: int, offset: int) -> np.ndarray:
    values = 10 * (np.arange(length) + offset)
    return np.broadcast_to(values[:, None, None, None], (length, 16, 16, 3)).astype(np.uint8).copy()


def _table(episode: int, length: int, start_index: int, images: list[dict] | None = None) -> pa.Table:
    columns = {
        "action": [[float(t), float(-t)] for t in range(length)],
        "next.reward": [float(t) for t in range(length)],
        "next.success": [t >= length - 3 for t in range(length)],
        "observation.state": [[1.0, 2.0, 3.0]] * length,
        "timestamp": [t / FPS for t in range(length)],
        "frame_index": list(range(length)),
        "episode_index": [episode] * length,
        "index": list(range(start_index, start_index + length)),
    }
    if images is not None:
        columns[CAMERA] = images
    return pa.table(columns)


def _info(version: str, dtype: str) -> dict:
    if version == "v3.0":
        paths = {"data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                 "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
    else:
        paths = {"data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                 "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"}
    return {"codebase_version": version, "fps": FPS, "chunks_size": 1000, **paths,
            "features": {CAMERA: {"dtype": dtype, "shape": [16, 16, 3]}, "action": {"dtype": "float32", "shape": [2]},
                         "next.reward": {"dtype": "float32", "shape": [1]}}}


def _write_v21(root, images: bool = False) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(_info("v2.1", "image" if images else "video")))
    lines = [json.dumps({"episode_index": e, "length": n, "tasks": ["push"]}) for e, n in enumerate(LENGTHS)]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    start = 0
    for episode, length in enumerate(LENGTHS):
        frames = _frames(length, 5 * episode)
        cells = None
        if images:
            cells = []
            for frame in frames:
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, format="PNG")
                cells.append({"bytes": buffer.getvalue(), "path": None})
        else:
            write_video(root / f"videos/chunk-000/{CAMERA}/episode_{episode:06d}.mp4", frames, fps=FPS)
        path = root / f"data/chunk-000/episode_{episode:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(episode, length, start, cells), path)
        start += length


def _write_v30(root, codec: str | None = None) -> None:
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(_info("v3.0", "video")))
    tables, frames, rows, start = [], [], [], 0
    for episode, length in enumerate(LENGTHS):
        tables.append(_table(episode, length, start))
        frames.append(_frames(length, 5 * episode))
        rows.append({"episode_index": episode, "length": length, "data/chunk_index": 0, "data/file_index": 0,
                     "dataset_from_index": start, "dataset_to_index": start + length,
                     f"videos/{CAMERA}/chunk_index": 0, f"videos/{CAMERA}/file_index": 0,
                     f"videos/{CAMERA}/from_timestamp": start / FPS,
                     f"videos/{CAMERA}/to_timestamp": (start + length) / FPS})
        start += length
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables), root / "data/chunk-000/file-000.parquet")
    write_video(root / f"videos/{CAMERA}/chunk-000/file-000.mp4", np.concatenate(frames), fps=FPS, codec=codec)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")


def _check(root) -> None:
    assert detect_format(root) == "lerobot"
    reader, report = make_reader("auto", root), DataReport()
    infos = reader.scan(report)
    assert [(i.episode_id, i.length, i.action_dim, i.has_rewards) for i in infos] == [
        ("episode_000000", 6, 2, True), ("episode_000001", 8, 2, True)]
    assert not report.skipped
    episode = reader.load(infos[1])
    np.testing.assert_allclose(episode.frames[:, 8, 8, 0], 10 * (np.arange(8) + 5), atol=3)
    np.testing.assert_array_equal(episode.actions[:, 1], -np.arange(8))
    # next.reward[t] / next.success[t] follow action[t]: they arrive with frame t + 1
    np.testing.assert_array_equal(episode.rewards, [0, 0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(episode.success, np.arange(8) >= 6)
    assert episode.states.shape == (8, 3)


def test_lerobot_v21_videos(tmp_path):
    _write_v21(tmp_path)
    _check(tmp_path)


def test_lerobot_v21_images_in_parquet(tmp_path):
    _write_v21(tmp_path, images=True)
    _check(tmp_path)


@pytest.mark.parametrize("codec", [None, "libsvtav1"])
def test_lerobot_v30_packed_files(tmp_path, codec):
    _write_v30(tmp_path, codec)
    _check(tmp_path)


def test_lerobot_alignment_option_keeps_rows_unshifted(tmp_path):
    _write_v21(tmp_path)
    reader = make_reader("lerobot", tmp_path, {"alignment": "on_arrival"})
    episode = reader.load(reader.scan(DataReport())[1])
    np.testing.assert_array_equal(episode.rewards, np.arange(8))
    with pytest.raises(ValueError, match="alignment"):
        make_reader("lerobot", tmp_path, {"alignment": "after"})


def test_lerobot_missing_video_is_reported(tmp_path):
    _write_v21(tmp_path)
    (tmp_path / f"videos/chunk-000/{CAMERA}/episode_000001.mp4").unlink()
    report = DataReport()
    infos = make_reader("lerobot", tmp_path).scan(report)
    assert len(infos) == 1 and "missing file" in report.skipped[0][2]


def test_lerobot_cut_video_is_found_by_the_deep_check(tmp_path):
    _write_v21(tmp_path / "robot")
    video = tmp_path / f"robot/videos/chunk-000/{CAMERA}/episode_000001.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # an interrupted download
    index = build_index(DataConfig(sources=[{"name": "robot", "path": str(tmp_path / "robot")}], resolution=16,
                                   segment_length=4, val_fraction=0.0))
    assert index.report.used == 2 and not index.report.skipped  # indexing sees only that the file exists
    report = decode_all(index, progress=False)
    assert (report.found, report.used) == (2, 1)
    assert [(where, kind) for where, kind, _ in report.skipped] == [("robot/episode_000001", "undecodable")]


def test_lerobot_video_ending_before_an_episode_is_named(tmp_path):
    _write_v30(tmp_path)
    video = tmp_path / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    write_video(video, _frames(LENGTHS[0], 0), fps=FPS)  # the packed file lost the second episode's frames
    reader = make_reader("lerobot", tmp_path)
    infos = reader.scan(DataReport())
    assert reader.load(infos[0]).frames.shape[0] == LENGTHS[0]
    with pytest.raises(EpisodeError, match=r"no decodable frames between 0.550s and 1.350s"):
        reader.load(infos[1])


def test_a_camera_that_is_not_one_lists_the_cameras(tmp_path):
    _write_v21(tmp_path)
    for camera in ("observation.images.nope", "action"):
        with pytest.raises(EpisodeError, match=rf"options.camera='{camera}' is not one; its cameras: {CAMERA}"):
            make_reader("lerobot", tmp_path, {"camera": camera})
