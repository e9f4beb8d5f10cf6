"""TFRecord files and `tf.train.Example` messages in pure Python (no TensorFlow, no protobuf package).

A TFRecord is a sequence of records: uint64 length, uint32 masked CRC-32C of the length,
the payload, uint32 masked CRC-32C of the payload. The length CRC is always checked (it
catches truncated and corrupt files); the payload CRC only with `verify=True` (slow in Python).
A cut or a corrupt length ends the framing, but every complete record before it is still read:
`record_offsets` returns their offsets together with what went wrong, and where.
An Example maps feature names to a bytes, float or int64 list; `parse_example` returns
`{name: list[bytes] | np.ndarray}`. `write_tfrecord`/`encode_example` write small files
(tests, exports).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import EpisodeError


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C (Castagnoli) that TFRecord stores after the length and the payload."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_offsets(path: str | Path) -> tuple[list[int], str | None]:
    """Byte offsets of the complete records of a TFRecord file, checking each length header, and
    the damage that ended the framing early (a cut or a corrupt length, with its byte offset), else None.

    Nothing after a bad header can be framed, but the records before it are whole, so they are kept.
    """
    offsets, position = [], 0
    size = Path(path).stat().st_size
    with open(path, "rb") as stream:
        while position < size:
            header = stream.read(12)
            if len(header) < 12:
                return offsets, f"truncated record header at byte {position}"
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                return offsets, f"corrupt record length at byte {position}"
            if position + 16 + length > size:
                return offsets, f"truncated record at byte {position} ({length} bytes announced, file ends at {size})"
            offsets.append(position)
            position += 16 + length
            stream.seek(position)
    return offsets, None


def read_record(path: str | Path, offset: int, verify: bool = False) -> bytes:
    """The payload of the record starting at `offset`."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        header = stream.read(12)
        if len(header) < 12:
            raise EpisodeError(f"truncated record header at byte {offset}")
        (length,) = struct.unpack("<Q", header[:8])
        payload = stream.read(length)
        footer = stream.read(4)
    if len(payload) != length or len(footer) != 4:
        raise EpisodeError(f"truncated record at byte {offset}")
    if verify and masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
        raise EpisodeError(f"corrupt record payload at byte {offset}")
    return payload


def iter_records(path: str | Path, verify: bool = False) -> Iterator[bytes]:
    """Every record payload of a file, in order; a cut or damaged file raises EpisodeError after its whole records."""
    offsets, damage = record_offsets(path)
    for offset in offsets:
        yield read_record(path, offset, verify)
    if damage is not None:
        raise EpisodeError(f"{path}: {damage}")


def _varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise EpisodeError("truncated protobuf varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values are memoryviews."""
    data, position = memoryview(data), 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position:position + 8], position + 8
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = data[position:position + size], position + size
        elif wire == 5:
            value, position = data[position:position + 4], position + 4
        else:
            raise EpisodeError(f"unsupported protobuf wire type {wire}")
        if position > len(data):
            raise EpisodeError("truncated protobuf message")
        yield number, wire, value


def _message(wire: int, body: Any) -> memoryview:
    if wire != 2:
        raise EpisodeError("not a tf.train.Example (unexpected protobuf field type)")
    return body


def _feature(data: memoryview) -> list[bytes] | np.ndarray:
    for kind, wire, body in _fields(data):
        body = _message(wire, body)
        if kind == 1:  # BytesList
            return [bytes(v) for n, _, v in _fields(body) if n == 1]
        floats: list[np.ndarray] = []
        ints: list[int] = []
        for n, wire, v in _fields(body):
            if n != 1:
                continue
            if kind == 2:  # FloatList, packed or not
                if wire not in (2, 5):
                    raise EpisodeError("not a tf.train.Example (bad float list)")
                floats.append(np.frombuffer(bytes(v), dtype="<f4"))
            elif wire == 2:  # Int64List packed
                position = 0
                while position < len(v):
                    value, position = _varint(v, position)
                    ints.append(value - (1 << 64) if value >= 1 << 63 else value)
            else:
                ints.append(v - (1 << 64) if v >= 1 << 63 else v)
        if kind == 2:
            return np.concatenate(floats) if floats else np.zeros(0, np.float32)
        if kind == 3:
            return np.asarray(ints, dtype=np.int64)
    return []


def parse_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Decode a serialized `tf.train.Example` into {feature name: bytes list or numeric array}."""
    features: dict[str, list[bytes] | np.ndarray] = {}
    for number, wire, body in _fields(data):
        if number != 1:
            continue
        for entry_number, entry_wire, entry in _fields(_message(wire, body)):
            if entry_number != 1:
                continue
            key, value = "", memoryview(b"")
            for n, w, v in _fields(_message(entry_wire, entry)):
                if n == 1:
                    key = bytes(_message(w, v)).decode("utf-8", errors="replace")
                elif n == 2:
                    value = _message(w, v)
            features[key] = _feature(value)
    return features


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_example(features: dict[str, Any]) -> bytes:
    """Serialize {name: list of bytes | float array | int array} as a `tf.train.Example`."""
    entries = b""
    for key, values in features.items():
        if isinstance(values, (bytes, bytearray)):
            values = [bytes(values)]
        if isinstance(values, list) and values and isinstance(values[0], bytes):
            feature = _delimited(1, b"".join(_delimited(1, bytes(v)) for v in values))
        else:
            array = np.asarray(values).reshape(-1)
            if np.issubdtype(array.dtype, np.integer):
                feature = _delimited(3, _delimited(1, b"".join(_encode_varint(int(v)) for v in array)))
            else:
                feature = _delimited(2, _delimited(1, array.astype("<f4").tobytes()))
        entries += _delimited(1, _delimited(1, key.encode("utf-8")) + _delimited(2, feature))
    return _delimited(1, entries)


def write_tfrecord(path: str | Path, records: list[bytes]) -> Path:
    """Write payloads as a TFRecord file with correct CRCs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as stream:
        for payload in records:
            length = struct.pack("<Q", len(payload))
            stream.write(length + struct.pack("<I", masked_crc32c(length)))
            stream.write(payload + struct.pack("<I", masked_crc32c(payload)))
    return path
