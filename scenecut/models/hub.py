"""Pretrained weights by name: what ``--model NAME`` and ``--encoder NAME`` resolve to.

A name is a registered record (``registry``), downloaded into the cache on first use
(``download``) and checked against what was recorded when it came (``cache``); a name given to
``weights import``; or a checkpoint file. This module also holds the imports and what
``--model auto`` finds installed; the names of those three modules are re-exported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scenecut.errors import InputError, ScenecutError
from scenecut.models.cache import (  # noqa: F401 (re-exported)
    IMPORTED_DIR,
    FileCheck,
    Stamp,
    cache_dir,
    check_installed,
    file_sha256,
    imported_names,
    imported_path,
    installed_path,
    is_installed,
    make_cache_dir,
    read_stamp,
    stamp_path,
    verification,
    weights_dir,
)
from scenecut.models.config import PARTS, ModelConfig
from scenecut.models.download import (  # noqa: F401 (re-exported)
    Notice,
    Progress,
    download,
    download_timeout,
    offline_env,
)
from scenecut.models.registry import (  # noqa: F401 (re-exported)
    BASSL_PREPROCESSING,
    REGISTRY,
    RENAMED,
    SCRL_PREPROCESSING,
    DownloadError,
    OfflineError,
    Preprocessing,
    WeightRecord,
    WeightsChanged,
    WeightsError,
    get,
    registry_markdown,
    renamed_message,
)

log = logging.getLogger(__name__)


def boundary_models() -> list[tuple[str, Path]]:
    """Installed checkpoints that can score boundaries, best first: pulled fine-tuned records
    (in registry order), then imported models that carry a boundary head. One that does not
    load, or no longer matches the sha256 recorded when it came, is skipped with a warning.
    Never downloads."""
    records = [r for r in REGISTRY.values() if r.kind == "finetuned" and is_installed(r)]
    names = imported_names()
    if not records and not names:
        return []
    from scenecut.models.checkpoints import check_file, checkpoint_parts

    candidates = [(r.name, installed_path(r)) for r in records]
    candidates += [(n, imported_path(n)) for n in names]
    found = []
    for name, path in candidates:
        parts = checkpoint_parts(path) if name in names else PARTS
        if parts and not ("shot_encoder" in parts and {"head_sbd", "lstm_head"} & set(parts)):
            continue  # an imported encoder or head, for training; no parts: broken, said below
        try:
            # A file unchanged since it was installed was checked to load then.
            if name in names or check_installed(REGISTRY[name]) is None:
                check_file(path)
        except WeightsChanged as exc:  # says how to get it again
            log.warning("skipping %s: %s", name, exc)
            continue
        except ScenecutError as exc:
            again = (
                f"pull {name} --force"
                if name in REGISTRY
                else f"import FILE --as {name} --overwrite"
            )
            log.warning("skipping %s: %s (`scenecut weights %s` replaces it)", name, exc, again)
            continue
        found.append((name, path))
    return found


def resolve(
    name_or_path: str | os.PathLike,
    *,
    fetch: bool = False,
    offline: bool | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """A registered name, an imported name, or an existing local file -> the checkpoint.

    A registered name must be in the cache (its recorded size and sha256 are checked), or,
    with ``fetch``, is downloaded now unless ``offline`` (default: ``$SCENECUT_OFFLINE``);
    ``progress`` and ``notice`` are ``download``'s.
    """
    name = str(name_or_path)
    if name in REGISTRY:
        record = REGISTRY[name]
        if is_installed(record):
            check_installed(record)
            return installed_path(record)
        if not fetch:
            raise WeightsError(
                f"weights {name!r} are not downloaded; run `scenecut weights pull {name}`"
            )
        return download(record, progress=progress, notice=notice, offline=offline)
    if name in imported_names():
        return imported_path(name)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"{path} is not a file; give a checkpoint file or a registered name")
    if message := renamed_message(name):
        raise WeightsError(message)
    raise WeightsError(
        f"{name!r} is neither a registered or imported weights name nor an existing file "
        "(see `scenecut weights list`)"
    )


@dataclass(frozen=True)
class ImportedWeights:
    name: str
    path: Path
    source: str  # the format it came from: scenecut, modelscope, lightning, torchvision, scrl
    parts: tuple[str, ...]  # which of shot_encoder, crn, head_sbd it holds
    encoder: str


def import_weights(
    paths: str | os.PathLike | Sequence[str | os.PathLike], name: str, overwrite: bool = False
) -> ImportedWeights:
    """Convert foreign checkpoints into our safetensors format under ``name`` in the cache.

    Each file is read as data only (``torch.load(weights_only=True)``), its keys mapped to ours
    and checked tensor by tensor; a checkpoint that does not match is refused. A scenecut
    safetensors file keeps its own configuration. Several files make one model when each holds
    other parts: SCRL publishes its encoder and its BiLSTM head apart (``merge_parts``).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    dest = imported_path(name)
    if dest.exists() and not overwrite:  # said before torch loads (seconds)
        raise WeightsError(f"imported weights {name!r} exist ({dest}); pass --overwrite")
    from scenecut.models.checkpoints import load_state, read_any, save_state

    if len(paths) == 1 and (clip := _clip_model(Path(paths[0]), dest)) is not None:
        return ImportedWeights(name, dest, *clip)
    read = [(Path(p), *read_any(p)) for p in paths]
    state, config = merge_parts([(path, s, c) for path, s, c, _ in read])
    make_cache_dir(dest.parent)
    parts = save_state(state, config, dest)
    if len(read) > 1:
        try:
            load_state(dest)  # the parts fit together (shapes against the merged configuration)
        except InputError as exc:
            dest.unlink(missing_ok=True)
            raise InputError(f"these files do not make one model: {exc}") from None
    sources = "+".join(dict.fromkeys(source for *_, source in read))
    return ImportedWeights(name, dest, sources, parts, config.encoder)


def _clip_model(path: Path, dest: Path) -> tuple[str, tuple[str, ...], str] | None:
    """A Saccade-VSSL clip encoder (the reference's ``.pth`` or our file) written to ``dest``:
    (source, parts, backbone); None when ``path`` is another kind of checkpoint."""
    from scenecut.models import saccade

    ours = saccade.is_clip_model(path)
    if not ours and (path.suffix.lower() != ".pth" or not saccade.may_be_reference(path)):
        return None  # .pth.tar (SCRL), .ckpt, archives, torchvision's .pth: not read twice
    source = "scenecut" if ours else "saccade-vssl"
    try:
        net, config = saccade.load_model(path)
    except saccade.NotReference:
        return None
    make_cache_dir(dest.parent)
    saccade.save_model(net, config, dest)
    return source, ("clip_encoder",), config.backbone


# What a shot encoder's file decides in a model's configuration; the rest (the boundary head's
# shape, its threshold) comes from the file holding the head.
_ENCODER_FIELDS = ("encoder", "image_size", "resize", "mean", "std", "interpolation", "keyframes")


def merge_parts(files: list[tuple[Path, dict, ModelConfig]]) -> tuple[dict, ModelConfig]:
    """One state dict and configuration from checkpoints holding different parts; ``InputError``
    when two hold the same part."""
    import dataclasses

    if len(files) == 1:
        return files[0][1], files[0][2]
    owner: dict[str, Path] = {}
    state: dict = {}
    for path, tensors, _ in files:
        for part in sorted({key.split(".", 1)[0] for key in tensors}):
            if part in owner:
                raise InputError(f"both {owner[part]} and {path} hold {part} weights; give one")
            owner[part] = path
        state.update(tensors)
    by_path = {path: config for path, _, config in files}
    head = next((owner[p] for p in ("lstm_head", "head_sbd", "crn") if p in owner), None)
    config = by_path[head] if head is not None else files[0][2]
    if "shot_encoder" in owner:
        encoder = by_path[owner["shot_encoder"]]
        config = dataclasses.replace(config, **{f: getattr(encoder, f) for f in _ENCODER_FIELDS})
    return state, config
