"""Downloading a registered checkpoint into the cache.

Downloads stream to ``<file>.part`` in small reads (resumed with an HTTP Range request from the
URL that started it; a server that stalls for ``$SCENECUT_DOWNLOAD_TIMEOUT`` seconds, default
30, or trickles slower than 1 KiB/s over that long, is given up on and the bytes received are
kept for the next try), are checked for size and sha256 in chunks, must load as the checkpoint
the record describes, and only then move into place with ``os.replace``, so the cache never
holds a half-written or wrong file under its final name. ``SCENECUT_OFFLINE=1`` forbids every
download. Nothing is fetched at import time.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.models import archives
from scenecut.models.cache import (
    _new_stamp,
    _write_stamp,
    check_installed,
    file_sha256,
    installed_path,
    make_cache_dir,
    read_stamp,
    stamp_path,
    weights_dir,
    write_error,
)
from scenecut.models.config import PARTS
from scenecut.models.registry import DownloadError, OfflineError, WeightRecord, WeightsChanged

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
Notice = Callable[[str], None]  # one line for a person: what is downloaded, from where

_CHUNK = 1 << 16  # bytes per read: progress moves, and a stall loses nothing already received
_ATTEMPTS = 3  # connections per URL; a dropped one is resumed with a Range request
_TIMEOUT_S = 30.0  # default stall deadline, in seconds ($SCENECUT_DOWNLOAD_TIMEOUT)
_MIN_RATE = 1024  # bytes/s: slower than this over a whole stall deadline counts as a stall


def download_timeout() -> float:
    """Seconds without data (or below 1 KiB/s) before a download counts as stalled."""
    text = os.environ.get("SCENECUT_DOWNLOAD_TIMEOUT", "")
    if not text:
        return _TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise UsageError(f"SCENECUT_DOWNLOAD_TIMEOUT={text!r} is not a number of seconds above 0")
    return value


def offline_env() -> bool:
    """Whether ``$SCENECUT_OFFLINE`` forbids downloads (1, true, yes, on)."""
    text = os.environ.get("SCENECUT_OFFLINE", "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"SCENECUT_OFFLINE={text!r}: use 1 to forbid downloads, 0 to allow them")


def _by_hand(record: WeightRecord) -> str:
    """How to get ``record`` onto a machine that cannot download it."""
    local = f"`scenecut weights import FILE --as {record.name}-local`"
    if not record.urls:
        return f"get it by hand from {record.homepage}, then run {local}"
    dest = installed_path(record)
    copied = dest.parent if record.archive_member else dest
    return (
        f"run `scenecut weights pull {record.name}` on a machine with internet and copy its "
        f"{copied.relative_to(weights_dir())}* into {weights_dir()}, or fetch {record.url} "
        f"by hand and run {local}"
    )


def download(
    record: WeightRecord,
    *,
    force: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
    offline: bool | None = None,
) -> Path:
    """Fetch, check and install ``record``; return the checkpoint's path.

    Already installed (matching its recorded or published sha256, and loading) -> returned at
    once unless ``force``. The candidate URLs are tried in order; a ``.part`` left by an
    interrupted download is resumed from the URL that started it. ``progress(done, total)``
    gets byte counts after every read (``total`` None when neither the record nor the server
    gives a size); ``notice`` one line per URL used (what, how big, from where) and the
    tarball member taken. Nothing is installed unless it loads as the checkpoint the record
    describes. ``offline`` (default: ``$SCENECUT_OFFLINE``) forbids fetching.
    """
    dest = installed_path(record)
    if not force and dest.is_file() and _still_valid(record, dest):
        if read_stamp(record) is None:  # installed by an older version: recorded from now on
            _write_stamp(record, _new_stamp(dest, file_sha256(dest), "already installed"))
        return dest
    if not record.urls:
        raise DownloadError(f"{record.name} has no direct download link: {_by_hand(record)}")
    if offline or (offline is None and offline_env()):
        why = "--offline" if offline else "SCENECUT_OFFLINE=1"
        raise OfflineError(
            f"{record.name} is not in the cache and {why} forbids downloading it: "
            f"{_by_hand(record)}"
        )
    download_timeout()  # a bad setting is a usage error before any connection
    folder = weights_dir()
    make_cache_dir(folder)
    part = folder / (record.filename + ".part")
    if force:
        _discard(part)
    failures: list[str] = []
    network = False
    for number, url in enumerate(record.urls, 1):
        try:
            _fetch(record, url, part, progress, notice)
            digest, published = _check(record, url, part)
            if record.archive_member:
                _extract(record, url, part, digest, published, notice)
            else:
                _verify(record, url, part, part)
                stamp_path(record).unlink(missing_ok=True)
                os.replace(part, dest)
                _write_stamp(record, _new_stamp(dest, digest, url, published=published))
            _discard(part)
            return dest
        except _SourceFailed as exc:
            failures.append(f"{url}: {exc}")
            network = network or exc.network
            if number < len(record.urls):
                log.warning(
                    "%s: %s gave no usable file (%s); trying %s",
                    record.name,
                    url,
                    exc,
                    record.urls[number],
                )
    tried = (
        failures[0]
        if len(failures) == 1
        else f"tried {len(failures)} URLs: "
        + " | ".join(f"{i}. {f}" for i, f in enumerate(failures, 1))
    )
    if part.is_file():  # what a stalled or dropped connection left
        tried += (
            f". {part.stat().st_size} bytes are kept in {part} and the next `scenecut weights "
            f"pull {record.name}` resumes"
        )
    hint = f". If this machine is offline: {_by_hand(record)}" if network else ""
    raise DownloadError(f"cannot download {record.name} from {tried}{hint}")


class _Interrupted(Exception):
    """The connection ended or stalled before the whole file came: retried, then reported."""


class _SourceFailed(Exception):
    """This URL gave no usable file (the reason, without the URL): the next one is tried.
    ``network``: it could not be reached or gave no file at all (not a bad file)."""

    def __init__(self, reason: str, network: bool = False):
        super().__init__(reason)
        self.network = network


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _source_of(part).unlink(missing_ok=True)


def _source_of(part: Path) -> Path:
    """Beside a ``.part``: the URL its bytes came from (resumed only from the same URL)."""
    return part.with_name(part.name + ".url")


def _fetch(
    record: WeightRecord, url: str, part: Path, progress: Progress | None, notice: Notice | None
) -> None:
    """Stream ``url`` into ``part``, resuming what is there; retry dropped connections."""
    # http.client and urllib take a tenth of `scenecut --help`'s start-up: loaded here only.
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    timeout = download_timeout()
    announced: int | None = None  # the file's size as the server first gave it
    said = False
    source = _source_of(part)
    for attempt in range(1, _ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if offset and source.exists() and source.read_text().strip() != url:
            offset = 0  # bytes from another URL: not mixed with this one's (rewritten below)
        if record.size is not None and offset >= record.size:
            if offset == record.size:
                return
            _discard(part)  # longer than the file can be: start again
            offset = 0
        request = urllib.request.Request(url, headers={"User-Agent": "scenecut"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    log.info("%s ignored the Range request; downloading from the start", url)
                    offset = 0
                elif offset and not _range_starts_at(response.headers, offset):
                    log.info("%s answered an unexpected Content-Range; restarting", url)
                    _discard(part)
                    continue
                size = _range_total(response.headers) if offset else None
                length = response.headers.get("Content-Length")
                if size is None and length and length.isdigit():
                    size = int(length) + offset
                announced = _consistent(url, part, announced, size)
                if record.size is not None and announced not in (None, record.size):
                    raise _SourceFailed(f"announces {announced} bytes, expected {record.size}")
                total = record.size or announced
                if not said and notice:
                    notice(_download_line(record, url, offset, total))
                said = True
                if not offset:
                    try:
                        source.write_text(url + "\n")
                    except OSError as exc:
                        raise write_error(source, exc) from None
                _copy(response, part, offset, total, progress, timeout)
            got = part.stat().st_size
            if total is not None and got < total:
                raise _Interrupted(f"connection closed at byte {got} of {total}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # Range not satisfiable: the .part is complete or bigger than the file.
                full = _range_total(exc.headers)
                if full is not None and full == offset:
                    _consistent(url, part, announced, full)
                    return
                _discard(part)
                continue
            raise _SourceFailed(f"HTTP {exc.code} {exc.reason}", network=True) from None
        except urllib.error.URLError as exc:
            raise _SourceFailed(f"cannot reach it ({exc.reason})", network=True) from None
        except (_Interrupted, HTTPException, OSError) as exc:
            got = part.stat().st_size if part.exists() else 0
            log.warning("download of %s interrupted at %d bytes (%s)", record.name, got, exc)
            if attempt == _ATTEMPTS:
                if not got:
                    _discard(part)
                raise _SourceFailed(f"kept failing ({exc})", network=True) from None
    # Every attempt had to start again (the server refused each resume): nothing was kept.
    raise _SourceFailed(
        f"answered {_ATTEMPTS} resume requests with something else than the rest of the file"
    )


def _download_line(record: WeightRecord, url: str, offset: int, total: int | None) -> str:
    size = "size not given" if total is None else archives.size_text(total)
    if offset:
        size = f"resuming at {archives.size_text(offset)} of {size}"
    return f"downloading {record.name} ({record.title}; {size}) from {url}"


def _consistent(url: str, part: Path, announced: int | None, size: int | None) -> int | None:
    """The file's size once the server has given it; a server that changes its mind (a body
    shorter than its first Content-Length, then "the file ends here") is not believed."""
    if size is None or announced is None or size == announced:
        return announced if size is None else size
    _discard(part)
    raise _SourceFailed(
        f"first announced {announced} bytes, then {size}: the file is incomplete or changed "
        "on the server; the download was deleted"
    )


def _copy(
    response,
    part: Path,
    offset: int,
    total: int | None,
    progress: Progress | None,
    timeout: float,
) -> None:
    """Append the body to ``part`` one small read at a time (``read1``: whatever has arrived),
    so progress moves and a stall keeps every byte received; a stall raises ``_Interrupted``."""
    done = offset
    if progress:
        progress(done, total)
    window, window_done = time.monotonic(), done
    try:
        out = part.open("ab" if offset else "wb")
    except OSError as exc:
        raise write_error(part, exc) from None
    with out:
        while True:
            try:
                chunk = response.read1(_CHUNK)
            except TimeoutError:
                raise _Interrupted(f"stalled: no data for {timeout:g} s") from None
            if not chunk:
                return
            try:
                out.write(chunk)
                out.flush()
            except OSError as exc:
                raise write_error(part, exc) from None
            done += len(chunk)
            if progress:
                progress(done, total)
            now = time.monotonic()
            if now - window >= timeout:
                if done - window_done < _MIN_RATE * (now - window):
                    raise _Interrupted(
                        f"stalled: {done - window_done} bytes in {now - window:.0f} s"
                    )
                window, window_done = now, done


def _range_starts_at(headers, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset


def _range_total(headers) -> int | None:
    match = re.match(r"bytes [^/]*/(\d+)", headers.get("Content-Range", "") if headers else "")
    return int(match.group(1)) if match else None


def _check(record: WeightRecord, url: str, part: Path) -> tuple[str, str | None]:
    """Size and hash of the finished ``.part``; on a mismatch delete it and raise. Returns the
    sha256 and which published hash it matched (None: there is none)."""
    size = part.stat().st_size
    if record.size is not None and size != record.size:
        _discard(part)
        raise _SourceFailed(f"gave {size} bytes, expected {record.size}; deleted it")
    digest = file_sha256(part)
    expected, prefix = record.sha256, record.sha256_prefix
    if (expected and digest != expected) or (
        not expected and prefix and not digest.startswith(prefix)
    ):
        _discard(part)
        want = expected or f"{prefix}... (from the file name)"
        raise _SourceFailed(
            f"sha256 mismatch for {record.name}: expected {want}, got {digest}; "
            "the download was deleted"
        )
    if not expected and not prefix:
        log.info("%s: no published sha256; %s gave sha256 %s", record.name, url, digest)
    return digest, ("sha256" if expected else "prefix" if prefix else None)


# The shot encoder each registered architecture holds ("bassl-crn": BaSSL's ResNet-50 + CRN);
# any other architecture names its encoder.
_ENCODER_OF = {"bassl-crn": "resnet50"}
_PARTS_OF = {"encoder": ("shot_encoder",), "pretrained": ("shot_encoder", "crn")}


def _usable(record: WeightRecord, path: Path) -> None:
    """Raise ``InputError`` unless ``path`` loads as the checkpoint ``record`` describes."""
    from scenecut.models.checkpoints import check_file

    encoder = _ENCODER_OF.get(record.architecture, record.architecture)
    check_file(path, encoder=encoder, parts=_PARTS_OF.get(record.kind, PARTS))


def _verify(record: WeightRecord, url: str, path: Path, download: Path) -> None:
    """``_usable`` on a finished download; if not, delete ``download`` and raise."""
    try:
        _usable(record, path)
    except InputError as exc:
        _discard(download)
        raise _SourceFailed(
            f"did not give a usable {record.name} checkpoint ({exc}); the download was "
            "deleted (a server may answer with a page instead of the file)"
        ) from None


def _still_valid(record: WeightRecord, dest: Path) -> bool:
    """Whether an installed checkpoint matches what was recorded and published, and loads."""
    try:
        stamp = check_installed(record, full=True)
    except WeightsChanged as exc:
        log.warning("%s; downloading it again", str(exc).split("; run")[0])
        return False
    if record.archive_member:
        archive = (stamp.archive or {}) if stamp else {}
        if record.sha256 and archive.get("sha256") != record.sha256:
            return False
    else:
        if record.size is not None and dest.stat().st_size != record.size:
            return False
        expected, prefix = record.sha256, record.sha256_prefix
        if expected or prefix:
            digest = stamp.sha256 if stamp else file_sha256(dest)
            if not (digest == expected if expected else digest.startswith(prefix or "")):
                return False
    try:
        _usable(record, dest)
    except ScenecutError as exc:
        log.warning("installed %s does not load (%s); downloading it again", record.name, exc)
        return False
    return True


def _member(record: WeightRecord, files: list) -> object:
    """The checkpoint in a tarball: the one member named like ``archive_member`` (in any
    folder), else the one ``*.ckpt``; several, or none, is an ``InputError``."""
    want = PurePosixPath(record.archive_member or "").name
    named = [m for m in files if PurePosixPath(m.name).name == want]
    found = named or [m for m in files if m.name.endswith(".ckpt")]
    if len(found) == 1:
        return found[0]
    shown = ", ".join(m.name for m in (found or files)[:10]) or "no files"
    what = f"several {want} or .ckpt files" if found else f"no {want} and no .ckpt file"
    raise InputError(
        f"{record.filename} holds {what} ({shown}), so which is the model is unclear; "
        "please report it"
    )


def _extract(
    record: WeightRecord,
    url: str,
    archive: Path,
    digest: str,
    published: str | None,
    notice: Notice | None,
) -> None:
    """Unpack the checkpoint and its sibling files (config.json) into ``weights/<name>/``,
    check that it loads, record its hash, then move the folder into place. A damaged,
    truncated, unsafe, ambiguous or oversized archive is deleted and nothing is installed."""
    target = weights_dir() / record.name
    staging = weights_dir() / f"{record.name}.extracting"
    checkpoint = staging / installed_path(record).name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with archives.open_tar(archive, record.filename) as tar:
                found = archives.members(tar, archive.stat().st_size, record.filename)
                files = [m for m in found if m.isfile()]
                member = _member(record, files)
                parent = PurePosixPath(member.name).parent
                make_cache_dir(staging)
                for m in files:
                    if PurePosixPath(m.name).parent != parent:
                        continue
                    out_path = checkpoint if m is member else staging / PurePosixPath(m.name).name
                    if m is not member and out_path == checkpoint:
                        continue  # a sibling with the name the checkpoint is installed under
                    try:
                        out = out_path.open("wb")
                    except OSError as exc:
                        raise write_error(out_path, exc) from None
                    with out:
                        archives.copy_member(tar, m, out, str(out_path))
        except InputError as exc:
            _discard(archive)
            raise _SourceFailed(
                f"{exc}; the download was deleted, run `scenecut weights pull {record.name}` again"
            ) from None
        _verify(record, url, checkpoint, archive)
        log.info("%s: took %s from %s", record.name, member.name, record.filename)
        if notice:
            notice(f"{record.name}: took {member.name} from {record.filename}")
        size = archive.stat().st_size
        about = {"file": record.filename, "size": size, "sha256": digest, "member": member.name}
        stamp = _new_stamp(checkpoint, file_sha256(checkpoint), url, published=published)
        _write_stamp(record, replace(stamp, archive=about), folder=staging)
        try:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except OSError as exc:
            raise write_error(target, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
