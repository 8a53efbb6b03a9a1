"""The local append-only spool: where a redirect worker records clicks while Redis cannot take them.

One file per recorder (`<recorder id>.spool`), locked with flock while its recorder lives, so that a
file whose lock is free belongs to a dead worker and may be replayed by any other. A record is

    length (4 bytes) | crc32 (4) | batch sequence (8) | payload (the stream entry's click batch)

written with one write() and fsynced before the redirect is answered. A torn record at the tail (the
worker died mid-write) fails its length or CRC check and ends the read: that batch was never
acknowledged to a viewer, so nothing answered is lost.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = struct.Struct(">IIQ")
SUFFIX = ".spool"


class SpoolWriter:
    """Appends batches to this recorder's spool file; opened lazily on the first spooled batch."""

    def __init__(self, directory: Path, recorder_id: str) -> None:
        self.path = directory / f"{recorder_id}{SUFFIX}"
        self._directory = directory
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self._fd

    def append(self, seq: int, payload: bytes) -> None:
        """Durably append one batch (blocking: call it from a worker thread)."""
        fd = self._open()
        record = _HEADER.pack(len(payload), zlib.crc32(payload), seq) + payload
        written = os.write(fd, record)
        if written != len(record):
            raise OSError(f"short write to spool ({written} of {len(record)} bytes)")
        os.fsync(fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def remove(self) -> None:
        """Delete the file once everything in it is in Redis (still holding the lock)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_records(path: Path, offset: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield (end offset, seq, payload) of each whole record from `offset`; stops at a torn tail."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        while True:
            header = handle.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            length, crc, seq = _HEADER.unpack(header)
            payload = handle.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            offset += _HEADER.size + length
            yield offset, seq, payload


def orphans(directory: Path, own: Path | None) -> Iterator[tuple[str, Path, int]]:
    """Spool files of dead recorders, each yielded while we hold its lock: (recorder id, path, fd).
    The caller closes the fd (releasing the lock) after replaying and deleting the file."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            # Replayed and deleted by another worker between glob and lock (the path may even hold a new
            # file by now): only the inode we locked is ours to replay.
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:
            os.close(fd)
            continue
        yield path.name[: -len(SUFFIX)], path, fd
