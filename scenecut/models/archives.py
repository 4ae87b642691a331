"""Untrusted archives: every header checked before a byte of a member is unpacked.

A tarball of weights (Kakao's BaSSL files) or a PyTorch zip checkpoint may come from anywhere.
Before anything is read, each member must be a plain file or folder with a relative path, and
the sizes the headers declare must add up to what the archive can plausibly hold (weights
barely compress, so a 2 MB download that unpacks to 2 GB is a bomb, not a checkpoint).
Members are then streamed in small chunks, never read whole into memory. No torch here.
"""

from __future__ import annotations

import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from scenecut.errors import InputError, OutputError

CHUNK = 1 << 16
MAX_MEMBERS = 1_000  # a weights tarball holds a checkpoint and its config
MAX_RECORDS = 100_000  # a PyTorch zip holds one record per tensor storage
MAX_RATIO = 20  # unpacked bytes per archive byte: weights compress by a few percent
MIN_ALLOWANCE = 1 << 20  # what a small archive may unpack to whatever its size
MAX_UNPACKED = 16 << 30

# What reading a damaged or cut-short tar, gzip, bzip2 or xz stream raises.
DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def allowance(archive_bytes: int) -> int:
    """How many bytes an archive of ``archive_bytes`` may unpack to."""
    return min(MAX_UNPACKED, max(MAX_RATIO * archive_bytes, MIN_ALLOWANCE))


def size_text(n: int) -> str:
    """``n`` bytes for a person: 202 bytes, 1.5 MiB, 2.0 GiB."""
    if n < 1 << 20:
        return f"{n:,} bytes"
    return f"{n / (1 << 20):,.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):,.1f} GiB"


def reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def is_zip(source: Path | BinaryIO) -> bool:
    """Whether ``source`` starts like a zip file (as torch decides; ``zipfile.is_zipfile`` also
    says yes for a plain tar that holds a zip checkpoint near its end)."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            head = f.read(4)
    else:
        source.seek(0)
        head = source.read(4)
    return head in (b"PK\x03\x04", b"PK\x05\x06")


def is_tar(path: Path) -> bool:
    """Whether ``path`` is a tar archive (plain or compressed); a damaged compressed stream
    counts, so that opening it says it is damaged instead of trying it as a checkpoint."""
    try:
        return tarfile.is_tarfile(path)
    except DAMAGED:
        with path.open("rb") as f:
            return f.read(6).startswith(_COMPRESSED_MAGIC)


@contextmanager
def open_tar(path: Path, what: str) -> Iterator[tarfile.TarFile]:
    """``path`` opened as a tar; a damaged or truncated one raises ``InputError``."""
    try:
        with tarfile.open(path, "r:*") as tar:
            yield tar
    except DAMAGED as error:
        raise InputError(f"{what} is a damaged or truncated archive ({reason(error)})") from None


def members(tar: tarfile.TarFile, archive_bytes: int, what: str) -> list[tarfile.TarInfo]:
    """Every member's header, checked as it is read: plain files and folders only, relative
    paths without '..', at most ``MAX_MEMBERS``, and sizes within ``allowance``. Refused
    before the data of an offending member is touched; a truncated archive fails here too."""
    limit = allowance(archive_bytes)
    found: list[tarfile.TarInfo] = []
    total = 0
    while (member := tar.next()) is not None:
        if len(found) >= MAX_MEMBERS:
            raise InputError(f"{what} holds more than {MAX_MEMBERS} files; not a weights archive")
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise InputError(f"{what} has a member outside its folder ({member.name!r}); refused")
        if not (member.isfile() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "a special file"
            raise InputError(f"{what} holds {kind} ({member.name!r}); refused")
        total += member.size if member.isfile() else 0
        if total > limit:
            raise InputError(
                f"{what} unpacks to more than {size_text(limit)} ({member.name!r} alone "
                f"declares {size_text(member.size)}) from {size_text(archive_bytes)}; refused "
                "as a likely archive bomb"
            )
        found.append(member)
    # Read to the end of the stream: a cut-short gzip/bzip2/xz stream fails its check here
    # (every member's data was skipped, so this is only the padding after the last header).
    while tar.fileobj.read(CHUNK):
        pass
    return found


def copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: BinaryIO, where: str) -> None:
    """Stream ``member`` into ``out`` in ``CHUNK`` pieces (never the whole member in memory).

    A failing write (disk full, file too large) raises ``OutputError`` naming ``where``; a
    damaged stream raises what ``DAMAGED`` lists, for ``open_tar`` to report.
    """
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - members() lets only files and folders through
        raise InputError(f"{member.name!r} is not a file")
    with source:
        while chunk := source.read(CHUNK):
            try:
                out.write(chunk)
            except OSError as error:
                raise OutputError(f"cannot write {where} ({error.strerror or error})") from None
        try:
            out.flush()
        except OSError as error:
            raise OutputError(f"cannot write {where} ({error.strerror or error})") from None


def extract_checkpoint(path: Path, out: BinaryIO, what: str, where: str) -> str:
    """Stream the one checkpoint in tarball ``path`` (``model-v1.ckpt``, else the one
    .ckpt/.pt/.pth file) into ``out``; return its name in the archive."""
    with open_tar(path, what) as tar:
        files = [m for m in members(tar, path.stat().st_size, what) if m.isfile()]
        wanted = [m for m in files if m.name.endswith("model-v1.ckpt")] or [
            m for m in files if m.name.endswith((".ckpt", ".pt", ".pth"))
        ]
        if len(wanted) != 1:
            names = ", ".join(m.name for m in wanted[:10]) or "none"
            raise InputError(
                f"{what} should hold exactly one model-v1.ckpt (or .ckpt/.pt/.pth) file; "
                f"found: {names}"
            )
        copy_member(tar, wanted[0], out, where)
        return wanted[0].name


def check_zip(source: Path | BinaryIO, size: int, what: str) -> bool:
    """Check a PyTorch zip checkpoint's directory before torch reads it: every record inside
    the file, a sane count, declared sizes within ``allowance``. Returns whether every record
    is stored uncompressed (as ``torch.save`` writes them, so the file can be memory-mapped)."""
    try:
        with zipfile.ZipFile(source) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise InputError(f"{what} is a damaged zip checkpoint ({reason(error)})") from None
    if len(records) > MAX_RECORDS:
        raise InputError(f"{what} holds {len(records)} records; not a checkpoint")
    limit = allowance(size)
    total = 0
    for record in records:
        if record.header_offset + record.compress_size > size:
            raise InputError(
                f"{what} is truncated or damaged: record {record.filename!r} ends past the file"
            )
        total += record.file_size
        if total > limit:
            raise InputError(
                f"{what} declares more than {size_text(limit)} of data in {size_text(size)}; "
                "refused as a likely archive bomb"
            )
    return all(r.compress_type == zipfile.ZIP_STORED for r in records)
