"""WebDataset `.tar` shards: members grouped into samples by key, one episode per sample.

What a sample may hold (an npz, per-array `.npy` members, a `.jpg`/`.png` frame sequence, a
video) is described in `ivideogpt.data.sources.sample`. Uncompressed shards are indexed by
member offsets, so `TarReader` serves the map-style dataset with random access; `iter_samples`
streams any shard (also `.tar.gz`) sequentially and undecoded, for `ShardStream`, and `iter_shard`
decodes what it streams into episodes. Gzip shards have no random access: `TarReader` indexes
them in one pass each and loads a sample by streaming its shard on from the sample loaded before
(from the start when it lies behind), so loads in shard order decompress each shard once.

A cut or damaged shard keeps what it can: every complete sample before the damage is read and
the damage is reported (kind `truncated`) with the number of samples recovered. A cut inside a
member is always seen; a cut between members is seen in an uncompressed shard by the missing
end-of-archive block (tar writers end an archive with zero blocks) and in a gzip shard by the
missing end of the gzip stream (a cut inside the gzip trailer alone loses nothing and is not
seen). The sample at the cut is skipped: nothing in a tar archive says how many members a
sample has, so its last members may be missing.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.formats import DATA_FORMATS
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader
from ivideogpt.data.sources.npz import READ_ERRORS
from ivideogpt.data.sources.sample import Read, sample_episode, sample_info

SHARD_SUFFIXES = DATA_FORMATS["tar"].suffixes  # .tar, .tar.gz, .tgz
GZIP_SUFFIXES = (".gz", ".tgz")
TAR_ERRORS = (tarfile.TarError, OSError, EOFError)
BLOCK = tarfile.BLOCKSIZE


def split_key(name: str) -> tuple[str, str]:
    """`dir/abc.actions.npy` -> (`dir/abc`, `actions.npy`): the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def gzipped(shard: Path) -> bool:
    """Whether a shard is gzip-compressed (`.tar.gz`, `.tgz`), read only in sequence."""
    return shard.name.lower().endswith(GZIP_SUFFIXES)


def shard_stem(shard: Path) -> str:
    """A shard's file name without `.tar`, `.tar.gz` or `.tgz`: the first part of its episodes' ids."""
    return next((shard.name[:-len(s)] for s in SHARD_SUFFIXES if shard.name.lower().endswith(s)), shard.stem)


def in_memory(members: dict[str, bytes]) -> Read:
    """The `Read` of a sample whose members are already in memory (a streamed sample)."""
    return lambda extension, limit: members[extension][:limit]


def header_info(key: str, members: dict[str, bytes], options: dict[str, Any] | None) -> EpisodeInfo:
    """A streamed sample's length and widths from its array headers (no pixels decoded); READ_ERRORS when unreadable."""
    return sample_info(key, members, in_memory(members), options, None)


class GzipStream(io.RawIOBase):
    """The decompressed bytes of a gzip file, up to where it is cut: then reads end and `cut` is set.

    (`gzip.open` raises at a cut and drops the bytes it had buffered, losing the samples before it.)
    """

    def __init__(self, path: Path) -> None:
        self.file, self.inflate, self.buffer, self.cut = open(path, "rb"), zlib.decompressobj(31), b"", False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buffer) < size) and self.file is not None:
            chunk = self.file.read(1 << 16)
            if not chunk:
                self.cut = not self.inflate.eof
                self.file.close()
                self.file = None
            while chunk.strip(b"\0"):  # one gzip member after another; zero padding ends the file
                if self.inflate.eof:
                    self.inflate = zlib.decompressobj(31)
                try:
                    self.buffer += self.inflate.decompress(chunk)
                except zlib.error as error:
                    raise OSError(f"corrupt gzip data: {error}") from error
                chunk = self.inflate.unused_data
        data, self.buffer = (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        return data

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        super().close()


def ends_cleanly(shard: Path, last: tarfile.TarInfo) -> bool:
    """Whether the end-of-archive zero block follows `last`, the final member read from `shard`."""
    end = last.offset_data + -(-last.size // BLOCK) * BLOCK
    with open(shard, "rb") as stream:
        stream.seek(end)
        block = stream.read(BLOCK)
    return len(block) == BLOCK and not block.strip(b"\0")


def report_cut(report: DataReport, shard: Path, key: str | None, detail: str, recovered: int) -> None:
    """Record a cut shard (one found item: the sample at the cut, else the shard) and what was recovered."""
    report.found += 1
    lost = f"; sample {key} at the cut skipped" if key is not None else ""
    report.skip(f"{shard}:{key}" if key is not None else str(shard),
                f"shard is cut or damaged ({detail}): recovered {recovered} complete sample(s){lost}", "truncated")


def iter_shard(path: str | Path, options: dict[str, Any] | None = None,
               report: DataReport | None = None) -> Iterator[tuple[str, Episode]]:
    """Stream (key, episode) from a shard in member order; bad samples are reported and skipped."""
    report = report if report is not None else DataReport()
    for key, members in iter_samples(path, report):
        try:
            yield key, sample_episode(members, options)
        except READ_ERRORS as error:
            report.skip(f"{path}:{key}", str(error), "unreadable")


def iter_samples(path: str | Path, report: DataReport) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream (key, {extension: bytes}) from a shard in member order, undecoded; a cut shard is reported."""
    path = Path(path)
    current, members, last, recovered = None, {}, None, 0

    def flush() -> Iterator[tuple[str, dict[str, bytes]]]:
        report.found += 1
        yield current, members

    gzip_stream = GzipStream(path) if gzipped(path) else None
    try:
        with tarfile.open(None if gzip_stream else path, "r|*", fileobj=gzip_stream) as archive:
            for member in archive:
                last = member
                if not member.isfile():
                    continue
                key, extension = split_key(member.name)
                if key != current:
                    if current is not None:
                        recovered += 1
                        yield from flush()
                    current, members = key, {}
                members[extension] = archive.extractfile(member).read()
    except TAR_ERRORS as error:
        if last is None and current is None and not (gzip_stream and gzip_stream.cut):
            report.found += 1
            report.skip(str(path), f"unreadable shard: {error}", "unreadable")
        else:
            report_cut(report, path, current, f"{type(error).__name__}: {error}", recovered)
        return
    finally:
        if gzip_stream is not None:
            gzip_stream.close()
    if gzip_stream is not None and gzip_stream.cut:
        after = f", after member {last.name}" if last is not None else ""
        report_cut(report, path, current, f"the gzip stream ends early{after}", recovered)
    elif gzip_stream is None and last is not None and not ends_cleanly(path, last):
        report_cut(report, path, current, f"no end-of-archive block after member {last.name}", recovered)
    elif current is not None:
        yield from flush()


class TarReader(FileTreeReader):
    """Tar shards under a folder (or one shard): uncompressed ones indexed for random access, gzip ones
    indexed and loaded by streaming (see the module docstring)."""

    suffixes = SHARD_SUFFIXES
    _cursor: tuple[int, Path, Iterator[tuple[str, dict[str, bytes]]]] | None = None  # (pid, gzip shard, samples left)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the open gzip stream (another process opens its own)."""
        return {**self.__dict__, "_cursor": None}

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        infos, shards = [], self.files()
        for shard in shards:
            for key, members, read, location in self._samples(shard, report):
                try:
                    infos.append(sample_info(f"{shard_stem(shard)}/{key}", members, read, self.options, location))
                except READ_ERRORS as error:
                    report.skip(f"{shard}:{key}", str(error), "unreadable")
        compressed = sum(map(gzipped, shards))
        if compressed:
            report.note(f"{self.path}: {compressed} gzip shard(s) have no random access: indexing read each whole, "
                        "and indexed training (stream: false) decompresses a shard up to every episode it loads; "
                        "unpack them to .tar to train indexed")
        return infos

    def _samples(self, shard: Path, report: DataReport) -> Iterator[tuple[str, Any, Read, Any]]:
        """(key, member extensions, their `Read`, location) of each complete sample of `shard`, counted as found:
        by member offsets in an uncompressed shard, by one pass through a gzip shard."""
        if gzipped(shard):
            for key, members in iter_samples(shard, report):
                yield key, members, in_memory(members), (shard, key)
            return
        for key, offsets in self._index(shard, report).items():
            report.found += 1
            yield key, offsets, partial(self._read, shard, offsets), (shard, offsets)

    def _index(self, shard: Path, report: DataReport) -> dict[str, dict[str, tuple[int, int]]]:
        """{key: {extension: (offset, size)}} of a shard's complete samples; a cut is reported."""
        samples: dict[str, dict[str, tuple[int, int]]] = {}
        last, key, problem = None, None, None
        try:
            with tarfile.open(shard, "r:") as archive:
                for member in archive:
                    last = member
                    if member.isfile():
                        key, extension = split_key(member.name)
                        samples.setdefault(key, {})[extension] = (member.offset_data, member.size)
        except TAR_ERRORS as error:
            problem = f"{type(error).__name__}: {error}"
        if last is None:
            if problem is not None:
                report.found += 1
                report.skip(str(shard), f"unreadable shard: {problem}", "unreadable")
            return samples
        if problem is None and ends_cleanly(shard, last):
            return samples
        if last.offset_data + last.size > shard.stat().st_size:
            problem = f"cut inside member {last.name}"
        samples.pop(key, None)
        report_cut(report, shard, key, problem or f"no end-of-archive block after member {last.name}", len(samples))
        return samples

    def _read(self, shard: Path, members: dict[str, tuple[int, int]], extension: str,
              limit: int | None = None) -> bytes:
        offset, size = members[extension]
        size = size if limit is None else min(size, limit)
        with open(shard, "rb") as stream:
            stream.seek(offset)
            data = stream.read(size)
        if len(data) != size:
            raise EpisodeError(f"{shard}: member {extension} truncated")
        return data

    def _streamed(self, shard: Path, key: str) -> dict[str, bytes]:
        """The members of sample `key` of a gzip shard: read on from the previous load, else from the start."""
        here = (os.getpid(), shard)  # a forked worker never reads on from its parent's open file
        earlier = [self._cursor[2]] if self._cursor is not None and self._cursor[:2] == here else []
        for samples in [*earlier, None]:
            self._cursor = (*here, samples if samples is not None else iter_samples(shard, DataReport()))
            for found, members in self._cursor[2]:
                if found == key:
                    return members
        raise EpisodeError(f"{shard}: sample {key} is gone; the shard changed or was damaged since it was indexed")

    def load(self, info: EpisodeInfo) -> Episode:
        shard, where = info.location
        try:
            data = (self._streamed(shard, where) if gzipped(shard) else
                    {ext: self._read(shard, where, ext) for ext in where})
        except OSError as error:
            raise EpisodeError(f"{shard}: {error}") from error
        return sample_episode(data, self.options)


def write_shard(path: str | Path, episodes: dict[str, Episode]) -> Path:
    """Write episodes as `<key>.npz` members of an uncompressed shard (for exporting and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for key, episode in episodes.items():
            add_episode(archive, key, episode)
    return path


def add_episode(archive: tarfile.TarFile, key: str, episode: Episode) -> None:
    """Append one episode to an open shard as the member `<key>.npz` (a key holds no dot after its last `/`)."""
    buffer = io.BytesIO()
    arrays = {n: getattr(episode, n) for n in ("frames", "actions", "rewards", "success", "states")
              if getattr(episode, n) is not None}
    np.savez_compressed(buffer, **arrays)
    info = tarfile.TarInfo(f"{key}.npz")
    info.size = buffer.tell()
    buffer.seek(0)
    archive.addfile(info, buffer)
