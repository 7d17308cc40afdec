"""A build context's content hash: the same tree gives the same hash on any machine.

Used by steps.synthetic for the synthetic digest. The context is a directory or a tar
archive (plain or compressed); both are streamed, file contents in 1 MiB reads, so memory
stays flat for any context size. A directory and a tar of the same tree hash the same.

What is hashed, per entry, in the order of its path components (byte-wise):
    d <path>                          a directory (parents implied by a tar count too)
    f <path> <mode> <sha256(content)>  a regular file
    l <path> <target>                 a symlink, never followed
    h <path> <target>                 a tar hard link (directories have none)
    o <path> <kind>                   anything else (fifo, device, socket)
Each record is its one-letter kind, then the path and each field as an 8-byte big-endian
length and the bytes (mode as octal text: `0`, `111`, `4111`), so no two trees share an
encoding; the hash is sha256 of the line `imagegate-context/v1` and the records. `mode` keeps
what a build copies and every checkout agrees on: the executable bit (any x bit) and setuid,
setgid, sticky. Owners, times and the rest of the permission bits differ between machines and
checkouts and are left out.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK", "hash_context"]

CHUNK = 1024 * 1024  # large reads: hashlib releases the GIL and the syscall count stays low
_FORMAT = b"imagegate-context/v1\n"


def _field(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def _mode_bits(mode: int) -> int:
    return (0o111 if mode & 0o111 else 0) | (mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX))


def _stream_digest(stream: BinaryIO, buffer: memoryview) -> bytes:
    digest = hashlib.sha256()
    while n := stream.readinto(buffer):
        digest.update(buffer[:n])
    return digest.digest()


def _record(kind: bytes, path: bytes, *fields: bytes) -> bytes:
    return kind + _field(path) + b"".join(_field(f) for f in fields)


def _key(path: bytes) -> list[bytes]:
    return path.split(b"/")


def _walk(root: Path, rel: bytes, buffer: memoryview) -> Iterator[bytes]:
    """Records of the tree under root/rel, depth first, entries sorted by name."""
    with os.scandir(root / os.fsdecode(rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        path = rel + b"/" + os.fsencode(entry.name) if rel else os.fsencode(entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            yield _record(b"l", path, os.fsencode(os.readlink(entry.path)))
        elif stat.S_ISDIR(st.st_mode):
            yield _record(b"d", path)
            yield from _walk(root, path, buffer)
        elif stat.S_ISREG(st.st_mode):
            with open(entry.path, "rb", buffering=0) as f:
                yield _record(b"f", path, b"%o" % _mode_bits(st.st_mode), _stream_digest(f, buffer))
        else:
            yield _record(b"o", path, b"%o" % stat.S_IFMT(st.st_mode))


def _tar_records(archive: Path, buffer: memoryview) -> list[tuple[list[bytes], bytes]]:
    """(sort key, record) for every member, parents implied; contents streamed, records kept (small)."""
    import tarfile

    records: dict[bytes, bytes] = {}
    dirs: set[bytes] = set()
    with tarfile.open(archive, mode="r|*", bufsize=CHUNK) as tar:
        for member in tar:
            path = os.fsencode(member.name).removeprefix(b"./").strip(b"/")
            if not path or path == b".":
                continue
            parts = path.split(b"/")
            dirs.update(b"/".join(parts[:i]) for i in range(1, len(parts)))
            if member.isdir():
                dirs.add(path)
            elif member.issym():
                records[path] = _record(b"l", path, os.fsencode(member.linkname))
            elif member.islnk():
                records[path] = _record(b"h", path, os.fsencode(member.linkname).removeprefix(b"./"))
            elif member.isreg():
                f = tar.extractfile(member)
                records[path] = _record(b"f", path, b"%o" % _mode_bits(member.mode), _stream_digest(f, buffer))
            else:
                records[path] = _record(b"o", path, member.type)
    for d in dirs - records.keys():
        records[d] = _record(b"d", d)
    return sorted(((_key(p), r) for p, r in records.items()), key=lambda kr: kr[0])


def hash_context(context: Path) -> str:
    """The hex sha256 content hash of a context directory or tar archive.

    Raises:
        FileNotFoundError: the context does not exist.
        OSError: a file in it cannot be read.
        tarfile.TarError: a file context is not a readable tar archive.
    """
    buffer = memoryview(bytearray(CHUNK))
    outer = hashlib.sha256(_FORMAT)
    if context.is_dir():
        for record in _walk(context, b"", buffer):
            outer.update(record)
    else:
        for _, record in _tar_records(context, buffer):
            outer.update(record)
    return outer.hexdigest()
