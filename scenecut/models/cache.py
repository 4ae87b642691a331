"""The weights cache: where checkpoints live, and the size and sha256 recorded beside each.

``$SCENECUT_HOME/weights`` (default ``~/.cache/scenecut/weights``) holds pulled checkpoints and
``imported/`` the ones ``weights import`` converted. The size and sha256 of what was installed
are written beside it (``<file>.json``) and checked on every later load: where the publisher
gives no hash, the first download is the reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal

from scenecut.errors import OutputError
from scenecut.files import make_dir, write_json
from scenecut.models.registry import (
    REGISTRY,
    DownloadError,
    WeightRecord,
    WeightsChanged,
    WeightsError,
)

_HASH_CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$SCENECUT_HOME``, else ``$XDG_CACHE_HOME/scenecut``, else ``~/.cache/scenecut``."""
    if home := os.environ.get("SCENECUT_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "scenecut"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def installed_path(record: WeightRecord) -> Path:
    """Where the checkpoint lives once pulled (a tarball's is extracted into ``<name>/``)."""
    if record.archive_member:
        return weights_dir() / record.name / PurePosixPath(record.archive_member).name
    return weights_dir() / record.filename


def is_installed(record: WeightRecord) -> bool:
    return installed_path(record).is_file()


# --------------------------------------------------------------------------------------------
# What was installed: size and sha256, recorded beside the file, checked on every load


@dataclass(frozen=True)
class Stamp:
    """The size and sha256 of an installed checkpoint when it came, and where it came from.

    ``published``: the hash the download was checked against (``"sha256"``, ``"prefix"`` for
    the 8 hex digits in a torchvision file name) or None: then this record is the only
    reference (first use). ``archive``: the tarball's own name, size, sha256 and the member
    taken from it. ``mtime_ns`` is when the file was last hashed; a file with the same size
    and time is not hashed again.
    """

    size: int
    sha256: str
    mtime_ns: int
    recorded: str  # UTC, ISO 8601
    source: str  # the URL, or how the file came ("already installed")
    published: Literal["sha256", "prefix"] | None = None
    archive: dict[str, str | int] | None = None


def stamp_path(record: WeightRecord) -> Path:
    path = installed_path(record)
    return path.with_name(path.name + ".json")


def read_stamp(record: WeightRecord) -> Stamp | None:
    """The stamp of an installed record; None when there is none (installed by an older
    version). A damaged stamp is a ``WeightsChanged`` error."""
    path = stamp_path(record)
    try:
        data = json.loads(path.read_text())
        return Stamp(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsChanged(
            f"{path} (the recorded hash of {record.name}) is unreadable ({exc}); run "
            f"`scenecut weights pull {record.name} --force` to download it again"
        ) from None


def _write_stamp(record: WeightRecord, stamp: Stamp, folder: Path | None = None) -> None:
    """Atomically (``files.write_json``); ``folder``: a staging folder."""
    path = stamp_path(record) if folder is None else folder / stamp_path(record).name
    try:
        write_json(path, asdict(stamp))
    except OutputError as exc:
        raise DownloadError(f"{exc}; {_SPACE_ADVICE}") from None


def _new_stamp(path: Path, digest: str, source: str, **extra) -> Stamp:
    st = path.stat()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017
    return Stamp(st.st_size, digest, st.st_mtime_ns, now, source, **extra)


def check_installed(record: WeightRecord, full: bool = False) -> Stamp | None:
    """Raise ``WeightsChanged`` unless the installed file has the size and sha256 recorded
    when it came. The size is compared every time; the file is hashed again only when its
    modification time changed (or ``full``). None when nothing was recorded."""
    stamp = read_stamp(record)
    if stamp is None:
        return None
    path = installed_path(record)
    st = path.stat()
    again = f"run `scenecut weights pull {record.name} --force` to download it again"
    if st.st_size != stamp.size:
        raise WeightsChanged(
            f"{path} changed since it was installed on {stamp.recorded}: {st.st_size} bytes, "
            f"recorded {stamp.size}; {again}"
        )
    if st.st_mtime_ns == stamp.mtime_ns and not full:
        return stamp
    digest = file_sha256(path)
    if digest != stamp.sha256:
        raise WeightsChanged(
            f"{path} changed since it was installed on {stamp.recorded}: sha256 {digest}, "
            f"recorded {stamp.sha256}; {again}"
        )
    if st.st_mtime_ns != stamp.mtime_ns:
        # Touched, not changed: remember the new time (a read-only cache is fine too).
        with contextlib.suppress(DownloadError):
            _write_stamp(record, replace(stamp, mtime_ns=st.st_mtime_ns))
    return stamp


@dataclass(frozen=True)
class FileCheck:
    """How one file of a record is (or will be) verified, for ``weights info``."""

    file: str
    role: Literal["download", "checkpoint", "download and checkpoint"]
    published: str | None  # the publisher's hash, as "sha256 <hex>" or "prefix <hex>"
    recorded: str | None  # the sha256 recorded at the first download
    verified: Literal["published hash", "first use", "not verified", "not installed"]
    note: str


def verification(record: WeightRecord) -> list[FileCheck]:
    """Which files of ``record`` a published hash verifies, which only the hash recorded at
    their first download, and which nothing (installed by an older version)."""
    published = (
        f"sha256 {record.sha256}"
        if record.sha256
        else (f"prefix {record.sha256_prefix}" if record.sha256_prefix else None)
    )
    installed = is_installed(record)
    stamp = read_stamp(record) if installed else None
    if not installed:
        how = (
            "checked against the published hash when downloaded"
            if published
            else "no published hash: the first download's sha256 will be recorded"
        )
        verdict = "not installed"
    elif stamp is None:
        how = (
            "installed by an older scenecut, before hashes were recorded; "
            f"`scenecut weights pull {record.name}` checks it and records its sha256"
        )
        verdict = "not verified"
    else:
        how = f"sha256 recorded on {stamp.recorded} from {stamp.source}; checked on every load"
        verdict = "published hash" if stamp.published else "first use"
    file = installed_path(record).name
    if not record.archive_member:
        recorded = stamp.sha256 if stamp else None
        return [FileCheck(file, "download and checkpoint", published, recorded, verdict, how)]
    archive = (stamp.archive or {}) if stamp else {}
    kept = f"deleted after extraction; took {archive['member']}" if archive else ""
    return [
        FileCheck(
            record.filename,
            "download",
            published,
            str(archive["sha256"]) if archive else None,
            verdict if published or not stamp else "first use",
            kept or ("deleted after extraction" if installed else how),
        ),
        FileCheck(
            file,
            "checkpoint",
            None,
            stamp.sha256 if stamp else None,
            "first use" if stamp else verdict,
            how,
        ),
    ]


IMPORTED_DIR = "imported"  # under weights_dir(): checkpoints converted by `weights import`


def imported_path(name: str) -> Path:
    """Where ``scenecut weights import ... --as NAME`` keeps the converted checkpoint."""
    if not name or name in REGISTRY or not all(c.isalnum() or c in "-_." for c in name):
        raise WeightsError(
            f"{name!r} cannot name imported weights: use letters, digits, '-', '_' or '.', "
            "and not a registered name"
        )
    return weights_dir() / IMPORTED_DIR / f"{name}.safetensors"


def imported_names() -> list[str]:
    folder = weights_dir() / IMPORTED_DIR
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def make_cache_dir(folder: Path) -> None:
    make_dir(folder, "folder", "set SCENECUT_HOME to a writable folder")


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


_SPACE_ADVICE = "free some space or set SCENECUT_HOME to another disk"


def write_error(path: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"cannot write {path} ({exc.strerror or exc}); {_SPACE_ADVICE}")
