"""WebDataset shards written by the real `webdataset.ShardWriter`: per-array members, image sequences, cut shards."""

from __future__ import annotations

import gzip
import json
import pickle
import subprocess
import tarfile

import numpy as np
import pytest
import webdataset as wds
import yaml

from ivideogpt.cli import main
from ivideogpt.data.config import DataConfig
from ivideogpt.data.index import build_index
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import make_reader
from ivideogpt.data.sources import webdataset as tar_source
from ivideogpt.data.sources.webdataset import iter_shard


def _frames(length: int, offset: int = 0, size: int = 8) -> np.ndarray:
    """Constant frames of value 10 * (t + offset): robust to JPEG."""
    values = (10 * (np.arange(length) + offset))[:, None, None, None]
    return np.broadcast_to(values, (length, size, size, 3)).astype(np.uint8).copy()


def _sample(key: str, length: int, action_dim: int, offset: int = 0) -> dict:
    """A sample as users write it with ShardWriter: one member per array plus a JSON member."""
    actions = np.stack([np.arange(length, dtype=np.float32) + d for d in range(action_dim)], 1)
    return {"__key__": key, "frames.npy": _frames(length, offset), "actions.npy": actions,
            "rewards.npy": np.arange(length, dtype=np.float32), "meta.json": {"task": "push", "length": length}}


def _write(pattern: str, samples: list[dict], maxcount: int = 100) -> None:
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0) as sink:
        for sample in samples:
            sink.write(sample)


def _scan(path, options=None) -> tuple[dict, DataReport, object]:
    reader, report = make_reader("tar", path, options), DataReport()
    return {i.episode_id: i for i in reader.scan(report)}, report, reader


def test_per_array_members_with_mixed_lengths_and_action_dims(tmp_path):
    _write(str(tmp_path / "shard-%06d.tar"),
           [_sample("ep0", 6, 2), _sample("ep1", 9, 2, offset=3), _sample("ep2", 5, 4), _sample("ep3", 7, 1)],
           maxcount=2)
    infos, report, reader = _scan(tmp_path)
    assert not report.skipped
    assert {k: (i.length, i.action_dim, i.has_rewards) for k, i in infos.items()} == {
        "shard-000000/ep0": (6, 2, True), "shard-000000/ep1": (9, 2, True),
        "shard-000001/ep2": (5, 4, True), "shard-000001/ep3": (7, 1, True)}
    episode = reader.load(infos["shard-000000/ep1"])
    np.testing.assert_array_equal(episode.frames, _frames(9, 3))
    np.testing.assert_array_equal(episode.actions[:, 1], np.arange(9) + 1)
    np.testing.assert_array_equal(episode.rewards, np.arange(9))
    streamed = dict(iter_shard(tmp_path / "shard-000001.tar"))
    assert sorted(streamed) == ["ep2", "ep3"] and streamed["ep2"].actions.shape == (5, 4)
    config = DataConfig(sources=[{"name": "wds", "path": str(tmp_path), "format": "tar"}], resolution=8,
                        segment_length=4, val_fraction=0.0)
    index = build_index(config)
    assert index.report.used == 4 and not index.with_actions and "actions dropped" in index.report.notes[0]


def test_alignment_option_shifts_after_action_rewards(tmp_path):
    _write(str(tmp_path / "r-%d.tar"), [{**_sample("ep", 5, 2), "success.npy": np.array([0, 0, 0, 1, 1])}])
    infos, _, reader = _scan(tmp_path, {"alignment": "after_action"})
    episode = reader.load(infos["r-0/ep"])
    np.testing.assert_array_equal(episode.rewards, [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(episode.success, [0, 0, 0, 0, 1])
    ((_, streamed),) = iter_shard(tmp_path / "r-0.tar", {"alignment": "after_action"})
    np.testing.assert_array_equal(streamed.rewards, episode.rewards)
    plain_infos, _, plain = _scan(tmp_path)
    np.testing.assert_array_equal(plain.load(plain_infos["r-0/ep"]).rewards, np.arange(5))


def test_member_names_are_options(tmp_path):
    _write(str(tmp_path / "s-%d.tar"), [{"__key__": "a", "cam_front.npy": _frames(5), "cam_wrist.npy": _frames(5, 9),
                                         "ctrl.npy": np.ones((4, 3), np.float32), "rew.npy": np.ones(5, np.float32)}])
    infos, report, reader = _scan(tmp_path, {"image_key": "cam_wrist", "action_key": "ctrl", "reward_key": "rew"})
    (info,) = infos.values()
    assert (info.length, info.action_dim, info.has_rewards) == (5, 3, True)
    episode = reader.load(info)
    np.testing.assert_array_equal(episode.frames, _frames(5, 9))
    np.testing.assert_array_equal(episode.actions[-1], 1)  # T - 1 actions: the last row repeated
    _, report, _ = _scan(tmp_path)  # no frame key among the default names
    assert len(report.skipped) == 1 and "no frame array" in report.skipped[0][2]


@pytest.mark.parametrize("pattern, image", [("{t:04d}.png", "png"), ("frames.{t:04d}.jpg", "jpg"),
                                            ("frame_{t:03d}.jpeg", "jpeg")])
def test_image_sequences(tmp_path, pattern, image):
    frames = _frames(12, size=16)
    sample = {"__key__": "seq", "actions.npy": np.zeros((11, 2), np.float32)}
    sample.update({pattern.format(t=t): frames[t] for t in range(12)})  # 12 frames: index order is not name order
    _write(str(tmp_path / "img-%d.tar"), [sample])
    infos, report, reader = _scan(tmp_path)
    (info,) = infos.values()
    assert (info.length, info.action_dim) == (12, 2) and not report.skipped
    episode = reader.load(info)
    assert episode.frames.shape == (12, 16, 16, 3)
    np.testing.assert_allclose(episode.frames[:, 8, 8, 0], 10 * np.arange(12), atol=0 if image == "png" else 3)
    ((key, streamed),) = iter_shard(tmp_path / "img-0.tar")
    np.testing.assert_array_equal(streamed.frames, episode.frames)


def test_bad_samples_are_skipped_with_reasons(tmp_path):
    broken = {"__key__": "broken_png", "0000.png": b"not a png", "0001.png": b"nor this"}
    _write(str(tmp_path / "bad-%d.tar"), [
        _sample("good", 5, 2),
        {"__key__": "meta_only", "meta.json": {"task": "push"}},
        {"__key__": "short_actions", "frames.npy": _frames(6), "actions.npy": np.ones((3, 2), np.float32)},
        {"__key__": "pickled", "frames.npy": b"\x93NUMPY junk"},
        broken])
    infos, report, reader = _scan(tmp_path)
    assert list(infos) == ["bad-0/good"] and report.found == 5
    reasons = {where.rsplit(":", 1)[1]: reason for where, _, reason in report.skipped}
    assert "no .npz, video, .npy arrays or .jpg/.png frame sequence" in reasons["meta_only"]
    assert "actions" in reasons["short_actions"] and "does not fit 6 frames" in reasons["short_actions"]
    assert "cannot read image" in reasons["broken_png"] and "pickled" in reasons
    stream_report = DataReport()
    assert [key for key, _ in iter_shard(tmp_path / "bad-0.tar", report=stream_report)] == ["good"]
    assert len(stream_report.skipped) == 4


def _shard(tmp_path, count: int = 4):
    """One shard of `count` three-member samples and the end offsets of each member's data."""
    path = tmp_path / "full.tar"
    _write(str(tmp_path / "full-%d.tar"), [_sample(f"ep{k}", 6, 2) for k in range(count)])
    (tmp_path / "full-0.tar").rename(path)
    with tarfile.open(path) as archive:
        ends = [(m.name, m.offset_data + m.size) for m in archive.getmembers()]
    return path, ends


def _cut(tmp_path, data: bytes, size: int):
    folder = tmp_path / f"cut{size}"
    folder.mkdir()
    (folder / "shard.tar").write_bytes(data[:size])
    return folder / "shard.tar"


def _check_cut(path, recovered: list[str], lost: str) -> None:
    infos, report, reader = _scan(path)
    assert [i.split("/")[1] for i in infos] == recovered
    assert [reader.load(i).frames.shape[0] for i in infos.values()] == [6] * len(recovered)
    ((where, kind, reason),) = report.skipped
    assert kind == "truncated" and where.endswith(f":{lost}")
    assert f"recovered {len(recovered)} complete sample(s)" in reason and report.found == len(recovered) + 1
    stream_report = DataReport()
    assert [key for key, _ in iter_shard(path, report=stream_report)] == recovered
    assert [(k, r[:12]) for _, k, r in stream_report.skipped] == [("truncated", "shard is cut")]
    assert f"recovered {len(recovered)} complete sample(s)" in stream_report.skipped[0][2]


def test_shard_cut_inside_a_member_keeps_the_complete_samples(tmp_path):
    path, ends = _shard(tmp_path)
    name, end = ends[9]  # members are sorted per sample: actions, frames, meta, rewards
    assert name == "ep2.frames.npy"
    _check_cut(_cut(tmp_path, path.read_bytes(), end - 3), ["ep0", "ep1"], "ep2")


def test_shard_cut_between_members_is_detected(tmp_path):
    path, ends = _shard(tmp_path)
    data = path.read_bytes()
    assert ends[10][0] == "ep2.meta.json"
    boundary = -(-ends[10][1] // 512) * 512  # ep2.rewards.npy is missing
    _check_cut(_cut(tmp_path, data, boundary), ["ep0", "ep1"], "ep2")
    _check_cut(_cut(tmp_path, data, boundary + 100), ["ep0", "ep1"], "ep2")  # inside ep2.rewards.npy's header
    last = -(-ends[-1][1] // 512) * 512  # every member there, but no end-of-archive blocks
    _check_cut(_cut(tmp_path, data, last), ["ep0", "ep1", "ep2"], "ep3")


def test_intact_shards_report_nothing_and_a_cut_gzip_shard_keeps_what_precedes_the_cut(tmp_path):
    path, _ = _shard(tmp_path, 3)
    infos, report, _ = _scan(path)
    assert len(infos) == 3 and not report.skipped
    data = gzip.compress(path.read_bytes())
    (tmp_path / "z.tar.gz").write_bytes(data)
    stream_report = DataReport()
    assert [key for key, _ in iter_shard(tmp_path / "z.tar.gz", report=stream_report)] == ["ep0", "ep1", "ep2"]
    assert not stream_report.skipped
    (tmp_path / "z.tar.gz").write_bytes(data[: len(data) * 4 // 5])
    keys = [key for key, _ in iter_shard(tmp_path / "z.tar.gz", report=stream_report)]
    ((where, kind, reason),) = stream_report.skipped
    assert keys == ["ep0", "ep1"][: len(keys)] and keys and where.endswith(f":ep{len(keys)}")
    assert kind == "truncated" and f"recovered {len(keys)} complete sample(s)" in reason


def test_junk_file_is_an_unreadable_shard(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 100)
    infos, report, _ = _scan(tmp_path)
    assert not infos and [k for _, k, _ in report.skipped] == ["unreadable"] and report.found == 1
    stream_report = DataReport()
    assert not list(iter_shard(tmp_path / "junk.tar", report=stream_report))
    assert [k for _, k, _ in stream_report.skipped] == ["unreadable"]


def _check_json(config_path, capsys, *extra: str) -> dict:
    """`ivideogpt data check CONFIG [overrides or flags] --json` (exit status 0), parsed."""
    assert main(["data", "check", str(config_path), *extra, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_data_check_reports_gzip_shards_as_it_does_uncompressed_ones(tmp_path, capsys):
    samples = [_sample(f"ep{k}", 6 + k, 2, offset=k) for k in range(5)]
    for name in ("plain", "gz"):
        (tmp_path / name).mkdir()
    _write(str(tmp_path / "plain" / "shard-%06d.tar"), samples, maxcount=3)
    _write(str(tmp_path / "gz" / "shard-%06d.tar.gz"), samples[:3])  # ShardWriter gzips a *.tar.gz pattern
    with tarfile.open(tmp_path / "plain" / "shard-000001.tar") as archive:  # the rest as `tar czf` packs it
        archive.extractall(tmp_path / "loose", filter="data")
    names = sorted(p.name for p in (tmp_path / "loose").iterdir())
    subprocess.run(["tar", "czf", str(tmp_path / "gz" / "shard-000001.tgz"), "-C", str(tmp_path / "loose"), *names],
                   check=True)
    results = {}
    for name in ("plain", "gz"):
        config = {"segment_length": 4, "val_fraction": 0.2, "sources": [{"name": "s", "path": str(tmp_path / name)}]}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        results[name] = _check_json(tmp_path / f"{name}.yaml", capsys, "--deep")
        index = build_index(DataConfig(**config))
        assert sorted(e.episode_id for s in index.splits.values() for e in s) == [
            f"s/shard-00000{k // 3}/ep{k}" for k in range(5)]
        assert sorted(e.info.length for s in index.splits.values() for e in s) == [6, 7, 8, 9, 10]
    plain, gz = results["plain"], results["gz"]
    assert plain["found"] == plain["used"] == 5 and plain["deep"] == {"decoded": 5, "broken": []}
    assert {k: v for k, v in gz.items() if k != "notes"} == {k: v for k, v in plain.items() if k != "notes"}
    streamed = _check_json(tmp_path / "gz.yaml", capsys, "stream=true")
    assert streamed["episodes"]["train"] == {"s": 5} and streamed["action_dim"] == 2 and streamed["rewards"]


def test_gzip_shard_samples_load_in_one_pass_per_shard(tmp_path, monkeypatch):
    _write(str(tmp_path / "shard-%06d.tar.gz"), [_sample(f"ep{k}", 6, 2, offset=k) for k in range(6)], maxcount=3)
    infos, report, reader = _scan(tmp_path)
    assert list(infos) == [f"shard-00000{k // 3}/ep{k}" for k in range(6)] and not report.skipped
    passes = []
    stream = tar_source.iter_samples
    monkeypatch.setattr(tar_source, "iter_samples", lambda path, report: passes.append(path) or stream(path, report))
    loaded = [reader.load(info) for info in infos.values()]
    assert [int(e.frames[0, 0, 0, 0]) for e in loaded] == [10 * k for k in range(6)] and len(passes) == 2
    assert int(reader.load(infos["shard-000001/ep3"]).frames[0, 0, 0, 0]) == 30 and len(passes) == 3  # went back
    assert pickle.loads(pickle.dumps(reader)).load(infos["shard-000000/ep1"]).frames.shape == (6, 8, 8, 3)
    (tmp_path / "shard-000001.tar.gz").write_bytes((tmp_path / "shard-000001.tar.gz").read_bytes()[:-200])
    infos, report, _ = _scan(tmp_path)
    ((where, kind, _),) = report.skipped
    lost = int(where.rpartition(":ep")[2])  # the sample at the cut; those before it are indexed
    assert kind == "truncated" and list(infos) == [f"shard-00000{k // 3}/ep{k}" for k in range(lost)]
