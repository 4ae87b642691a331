"""Checkpoints: our safetensors files (the config in the metadata), and foreign ones converted.

Foreign ``.pt``/``.pth``/``.ckpt`` files (ModelScope, Kakao's Lightning, torchvision, SCRL) are
read only with ``torch.load(weights_only=True)`` and checked key by key and shape by shape
before use: nothing in a checkpoint is ever executed. Every file is untrusted: the sizes it
declares (configuration, safetensors header, zip or tar directory) are checked against the
limits in ``config`` before anything is allocated, and any malformed file is an ``InputError``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO

import torch

from scenecut.errors import InputError, OutputError
from scenecut.files import replacing
from scenecut.models import archives
from scenecut.models.bassl import BaSSL, additive_mask, build
from scenecut.models.config import (
    ALL_PARTS,
    INT_LIMITS,
    MAX_PARAMETERS,
    METADATA_KEY,
    PARTS,
    CRNConfig,
    ModelConfig,
    check_config,
    parts_for,
)

log = logging.getLogger(__name__)


SOURCES = ("modelscope", "lightning", "torchvision", "scrl")


# --------------------------------------------------------------------------------------------
# Our checkpoints: safetensors + config in the metadata


def save(model: BaSSL, config: ModelConfig, path: str | Path) -> None:
    """Write ``path`` atomically as safetensors with the config in the metadata."""
    save_state(model.state_dict(), config, path)


def save_state(state: dict[str, torch.Tensor], config: ModelConfig, path: str | Path) -> tuple:
    """Write a (possibly partial: encoder only) state dict like ``save``; returns its parts."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with replacing(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: config.to_json()})
        except SafetensorError as error:  # its I/O errors (disk full, file too large) included
            reason = str(error).rpartition("I/O error: ")[2] or str(error)
            raise OutputError(
                f"cannot write {path} ({reason}); free some space or write elsewhere "
                "(SCENECUT_HOME moves the weights cache)"
            ) from None
    return tuple(p for p in ALL_PARTS if any(k.startswith(p + ".") for k in tensors))


def checkpoint_parts(path: str | Path) -> tuple[str, ...]:
    """Which of ``PARTS`` a scenecut safetensors file holds (reads the header only)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except (SafetensorError, OSError):
        return ()
    return tuple(p for p in ALL_PARTS if any(k.startswith(p + ".") for k in keys))


def load(path: str | Path, device: str = "cpu") -> tuple[BaSSL, ModelConfig]:
    """Rebuild a model from a scenecut safetensors file, or a complete foreign checkpoint."""
    path = Path(path)
    state, config = load_state(path)
    missing = [p for p in parts_for(config) if not any(k.startswith(p + ".") for k in state)]
    if missing:
        raise InputError(
            f"{path} holds no {', '.join(missing)} weights, so it cannot score boundaries; "
            "use it to initialise training instead"
        )
    model = build(config)  # keys, shapes, dtypes and the model's size were checked first
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # pragma: no cover - the checks above are meant to catch it
        raise InputError(f"{path} does not load: {archives.reason(error)}") from None
    return model.to(device).eval(), config


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The tensors and configuration of a checkpoint, complete or not: a scenecut safetensors
    file, or a foreign checkpoint converted by ``import_checkpoint``. Each part present
    (``shot_encoder``, ``crn``, ...) is complete and exactly the shape its configuration says."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if path.suffix != ".safetensors":
        state, config = import_checkpoint(path)
    else:
        state, config, _ = _read_safetensors(path, tensors=True)
    check_finite(state, path)
    return state, config


def check_finite(state: dict[str, torch.Tensor], path: Path | str) -> None:
    """``InputError`` for weights holding NaN or infinity: a network built from them scores
    every gap NaN (and the JSON written from that is not JSON)."""
    import torch

    for name, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(f"{path}: weight {name} holds NaN or infinite values; refused")


MAX_HEADER = 16 << 20  # a safetensors header: ~40 KB for BaSSL's 400 tensors


def _read_safetensors(
    path: Path, tensors: bool
) -> tuple[dict[str, torch.Tensor], ModelConfig, tuple[str, ...]]:
    """Check the header (its size, the configuration, every tensor's name, shape and dtype)
    before reading any tensor; with ``tensors=False`` stop there (the dict is then empty).
    Also returns the parts the file holds."""
    from safetensors import SafetensorError, safe_open

    with path.open("rb") as f:
        head = f.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < length <= min(MAX_HEADER, path.stat().st_size - 8):
        raise InputError(f"{path} is not a readable safetensors file (bad header size)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if METADATA_KEY not in metadata:
                raise InputError(
                    f"{path} has no scenecut model configuration in its metadata; "
                    "import foreign weights with `scenecut weights import` first"
                )
            config = _config(metadata[METADATA_KEY], path)
            names = list(f.keys())
            declared = {}
            for name in names:
                piece = f.get_slice(name)
                declared[name] = (tuple(piece.get_shape()), _ST_KINDS.get(piece.get_dtype()))
            parts = _parts_in(names, path)
            _check(declared, config, parts, str(path))
            state = {name: f.get_tensor(name) for name in names} if tensors else {}
    except (SafetensorError, OSError) as error:
        raise InputError(
            f"{path} is not a readable safetensors file ({archives.reason(error)})"
        ) from None
    return state, config, parts


def _config(text: object, path: Path) -> ModelConfig:
    if not isinstance(text, str):
        raise InputError(f"{path}: its model configuration is not text")
    try:
        return ModelConfig.from_json(text)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _parts_in(names, path: Path | str) -> tuple[str, ...]:
    parts = tuple(p for p in ALL_PARTS if any(n.startswith(p + ".") for n in names))
    if not parts:
        raise InputError(f"{path} holds none of {', '.join(ALL_PARTS)}: not scenecut weights")
    return parts


def check_file(
    path: str | Path, encoder: str | None = None, parts: tuple[str, ...] | None = None
) -> ModelConfig:
    """Raise ``InputError`` unless ``path`` holds a usable checkpoint: readable, each part it
    holds complete, ``parts`` (default: all a model needs to score boundaries) present, and
    the shot encoder ``encoder`` when given. Reads only the header of a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if path.suffix == ".safetensors":
        _, config, present = _read_safetensors(path, tensors=False)
    else:
        state, config, _ = convert_checkpoint(read_checkpoint(path), str(path), folder=path.parent)
        present = _parts_in(list(state), path)
    missing = [p for p in (parts_for(config) if parts is None else parts) if p not in present]
    if missing:
        raise InputError(f"{path} holds no {', '.join(missing)} weights")
    if encoder is not None and config.encoder != encoder:
        raise InputError(f"{path} holds a {config.encoder} shot encoder, not {encoder}")
    return config


# --------------------------------------------------------------------------------------------
# Foreign checkpoints


# Training frameworks whose bookkeeping objects (callbacks, hyper-parameter containers) sit in
# Lightning checkpoints. Under weights_only they are replaced by inert placeholders: nothing
# from the file is ever executed. Anything else that is not plain data is refused.
_FRAMEWORK_MODULES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf")


class _Inert:
    """Stands in for a framework object found in a checkpoint; keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def _torch_load(source: Path | BinaryIO, what: str, mmap: bool = False) -> object:
    try:
        return _load_data(source, what, mmap)
    except pickle.UnpicklingError as error:
        listed = _unsafe_globals(source)  # every global, in zip files; else the first one
        names = listed or re.findall(r"GLOBAL ([\w.]+)", str(error))
        if not names:  # not a pickle problem: a corrupt or foreign file
            raise InputError(f"{what} is not a readable PyTorch checkpoint") from None
        foreign = [n for n in names if n.split(".")[0] not in _FRAMEWORK_MODULES]
        if foreign or not listed:
            listed = ", ".join(foreign or names)
            raise InputError(
                f"refusing to load {what}: it contains pickled Python objects ({listed}) and "
                "scenecut only reads plain tensors (torch.load weights_only=True); "
                "re-save the state dict alone or convert it to safetensors"
            ) from None
        stubs = [(type(n.rsplit(".", 1)[-1], (_Inert,), {}), n) for n in names]
        try:
            with torch.serialization.safe_globals(stubs):
                return _load_data(source, what, mmap)
        except pickle.UnpicklingError as again:
            raise InputError(
                f"refusing to load {what}: its training-framework objects ({', '.join(names)}) "
                f"need more than plain data to rebuild ({str(again).splitlines()[0]}); "
                "re-save ckpt['state_dict'] alone"
            ) from None


def _load_data(source: Path | BinaryIO, what: str, mmap: bool) -> object:
    """``torch.load`` as data only. A malformed pickle makes torch's reader raise almost
    anything (IndexError, KeyError, struct.error, EOFError...): all of it means the file is
    not a checkpoint, except the refusal of a global, which the caller explains."""
    if not isinstance(source, Path):
        source.seek(0)
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles are not for our users
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise
    except MemoryError:
        raise InputError(
            f"{what} asks for more memory than there is; not a usable checkpoint"
        ) from None
    except Exception as error:
        raise InputError(
            f"{what} is not a readable PyTorch checkpoint ({archives.reason(error)})"
        ) from None


def _unsafe_globals(source: Path | BinaryIO) -> list[str]:
    if not isinstance(source, Path):
        source.seek(0)
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(source))
    except Exception:  # legacy (non-zip) files cannot be listed: refuse them like the rest
        return []


def detect_source(obj: object) -> str:
    """Which layout a loaded checkpoint uses: one of ``SOURCES``."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a dict of tensors, got {type(obj).__name__}")
    wrapped = isinstance(obj.get("state_dict"), dict)
    keys = list(obj["state_dict"] if wrapped else obj)
    _names_only(keys)
    if any(k.startswith("module.encoder_q.") for k in keys) or "embed_fc.weight" in keys:
        return "scrl"  # its pre-trained encoder, or its SceneSeg BiLSTM
    if any(k.startswith(("shot_encoder.", "crn.")) for k in keys):
        lightning = wrapped and ("epoch" in obj or "pytorch-lightning_version" in obj)
        return (
            "lightning" if lightning or any(k.startswith("loss.") for k in keys) else "modelscope"
        )
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "torchvision"
    shown = ", ".join(k[:60] for k in keys[:8])
    raise InputError(
        f"unrecognised checkpoint layout (first keys: {shown}); expected a ModelScope BaSSL "
        "pytorch_model.pt, a Kakao BaSSL model-v1.ckpt, a torchvision ResNet-50 .pth, or an "
        "SCRL encoder or BiLSTM checkpoint"
    )


def _names_only(keys: list) -> None:
    odd = [k for k in keys if not isinstance(k, str)]
    if odd:
        raise InputError(f"checkpoint keys must be names; found {type(odd[0]).__name__} keys")


# SCRL's SceneSeg BiLSTM (SceneSeg/BiLSTM_protocol.py ``BiLSTM``) -> our ``BiLSTMHead``: the
# same layers and computation, but SCRL's linear layers are embed_fc, fc1, fc2 and ours fc1..fc3.
SCRL_LSTM_NAMES = {
    "embed_fc": "fc1",  # 2048 -> 1024
    "bn1": "bn1",
    "lstm": "lstm",  # 2 layers, bidirectional, hidden 512
    "fc1": "fc2",  # 1024 -> 512
    "bn2": "bn2",
    "fc2": "fc3",  # 512 -> 2
}
# What foreign files hold besides the model, known and dropped without a word: Lightning
# pre-training's pretext heads, torchvision's classifier, SCRL's projection, key encoder, queue.
_KNOWN_EXTRAS = {
    "lightning": ("loss.",),
    "torchvision": ("fc.",),
    "scrl": ("module.encoder_q.fc.", "module.encoder_k.", "module.queue"),
}
SHOWN_KEYS = 10  # keys named in a warning or refusal before "... and N more"


def convert_state_dict(sd: dict, source: str, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a foreign state dict into our keys (``shot_encoder.*``, ``crn.*``, ``head_sbd.*``,
    ``lstm_head.*``).

    ``sd`` is the flat state dict; for "lightning" and "scrl" the wrapping dict is accepted too.
    Entries that belong to no part of the model (training losses, extra buffers: ModelScope
    ignores them too) are dropped, with one warning naming them. Every value kept must be a
    tensor, and all of them together no bigger than the largest model scenecut builds (a tensor
    may declare a huge shape over a tiny storage).
    """
    if source not in SOURCES:
        raise InputError(f"unknown checkpoint source {source!r}; known: {', '.join(SOURCES)}")
    if not isinstance(sd, dict):
        raise InputError(f"expected a dict of tensors, got {type(sd).__name__}")
    if source in ("lightning", "scrl") and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    _names_only(list(sd))
    out: dict = {}
    for key, value in sd.items():
        name = _our_name(key, source)
        if name is not None:
            out[name] = value
    if source == "scrl" and not out:
        raise InputError("no module.encoder_q.* or BiLSTM weights in this SCRL checkpoint")
    known = _KNOWN_EXTRAS.get(source, ())
    dropped = [k for k in sd if _our_name(k, source) is None and not k.startswith(known)]
    if dropped:
        entries = "1 entry" if len(dropped) == 1 else f"{len(dropped)} entries"
        log.warning(
            "%s: ignoring %s outside the model's parts: %s", what, entries, _listed(dropped)
        )
    total = 0
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"checkpoint entry {key} is a {type(value).__name__}, not a tensor")
        if _kind(value.dtype) not in ("float", "int"):
            raise InputError(f"checkpoint entry {key} holds {value.dtype} values, not numbers")
        total += value.numel()
        if total > MAX_PARAMETERS:
            raise InputError(
                f"the checkpoint's tensors declare more than {MAX_PARAMETERS:,} values; "
                "no scenecut model is that large"
            )
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def _our_name(key: str, source: str) -> str | None:
    """``key`` of a ``source`` file in our layout, or None when it belongs to no model part."""
    if source in ("modelscope", "lightning"):
        return key if key.split(".")[0] in ALL_PARTS and "." in key else None
    if source == "torchvision":
        return None if key.startswith("fc.") else "shot_encoder." + key
    prefix = "module.encoder_q."
    if key.startswith(prefix):
        return None if key.startswith(prefix + "fc.") else "shot_encoder." + key[len(prefix) :]
    module, dot, rest = key.partition(".")
    if dot and module in SCRL_LSTM_NAMES:
        return f"lstm_head.{SCRL_LSTM_NAMES[module]}.{rest}"
    return None


def _listed(keys: list[str]) -> str:
    """The first ``SHOWN_KEYS`` keys, each cut to 60 characters and escaped onto one line."""
    return _first_few([ascii(k[:60])[1:-1] for k in keys])


def _first_few(items: list[str]) -> str:
    """The first ``SHOWN_KEYS`` items, then how many more there are."""
    more = len(items) - SHOWN_KEYS
    return ", ".join(items[:SHOWN_KEYS]) + (f" ... and {more} more" if more > 0 else "")


def _dims(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...] | None:
    value = sd.get(key)
    if value is None:
        return None
    if value.dim() != dims:
        raise InputError(f"{key} has shape {list(value.shape)}; expected {dims} dimensions")
    return tuple(value.shape)


def infer_config(sd: dict[str, torch.Tensor], heads: int | None = None) -> ModelConfig:
    """The ``ModelConfig`` that a converted state dict implies (heads cannot be read from
    weights: 8 for BaSSL's 768-d CRN unless ``heads`` says otherwise). The shapes it is read
    from are checked, and the result is within ``config``'s limits. A BiLSTM head without an
    encoder is SCRL's, which scores the features of SCRL's 9-channel encoder."""
    conv1 = _dims(sd, "shot_encoder.conv1.weight", 4)
    lstm = _dims(sd, "lstm_head.fc1.weight", 2)
    if lstm is not None and conv1 is None:
        encoder, input_dim = "resnet50-9ch", lstm[1]
    elif "shot_encoder.layer1.0.conv1.weight" in sd or conv1 is None:
        encoder = "resnet50-9ch" if conv1 is not None and conv1[1] == 9 else "resnet50"
        input_dim = 2048
    else:
        encoder = "tiny"
        conv2 = _dims(sd, "shot_encoder.conv2.weight", 4)
        if conv2 is None:
            raise InputError("unrecognised shot encoder: conv1 without layer1 or conv2")
        input_dim = conv2[0]
    crn = CRNConfig(input_dim=input_dim)
    proj = _dims(sd, "crn.shot_embedding.shot_embedding.weight", 2)
    if proj is not None:
        hidden, input_dim = proj
        layers = {k.split(".")[3] for k in sd if k.startswith("crn.encoder.layer.")}
        inter = _dims(sd, "crn.encoder.layer.0.intermediate.dense.weight", 2)
        positions = _dims(sd, "crn.shot_embedding.position_embedding.weight", 2)
        if heads is None:
            heads = 8 if hidden % 8 == 0 else 1
        crn = CRNConfig(
            input_dim=input_dim,
            hidden_size=hidden,
            num_hidden_layers=len(layers),
            num_attention_heads=heads,
            intermediate_size=inter[0] if inter is not None else 4 * hidden,
            neighbor_size=(positions[0] - 2) // 2 if positions is not None else 8,
        )
    config = ModelConfig(encoder=encoder, crn=crn, head="crn" if lstm is None else "lstm")
    if encoder == "resnet50-9ch":
        # SCRL's extract_embeddings.py: Resize(224) (torchvision's default, bilinear), CenterCrop
        config = dataclasses.replace(config, resize=224, interpolation="bilinear")
    check_config(config)
    return config


# safetensors dtype names -> the kind of number (bool and anything else: refused)
_ST_KINDS = {
    **{d: "float" for d in ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")},
    **{d: "int" for d in ("I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8")},
}


def _kind(dtype: torch.dtype) -> str | None:
    if dtype.is_complex or dtype == torch.bool:
        return None
    return "float" if dtype.is_floating_point else "int"


def _expected(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], str | None]]:
    """Every tensor of the model ``config`` describes: shape and kind, built on the meta
    device (nothing allocated); a model over ``MAX_PARAMETERS`` values is refused."""
    with torch.device("meta"):
        model = build(config)
    expected = {k: (tuple(v.shape), _kind(v.dtype)) for k, v in model.state_dict().items()}
    count = sum(math.prod(shape) for shape, _ in expected.values())
    if count > MAX_PARAMETERS:
        raise InputError(
            f"its configuration describes a model of {count:,} values; scenecut refuses more "
            f"than {MAX_PARAMETERS:,}"
        )
    return expected


def _check(state: dict, config: ModelConfig, parts: tuple[str, ...], what: str) -> None:
    """Refuse ``state`` unless, for each of ``parts``, its keys, shapes and kinds of number are
    exactly ours. ``state`` maps names to tensors or to declared ``(shape, kind)`` pairs."""
    try:
        full = _expected(config)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    expected = {k: v for k, v in full.items() if k.split(".")[0] in parts}
    declared = {
        k: (tuple(v.shape), _kind(v.dtype)) if isinstance(v, torch.Tensor) else v
        for k, v in state.items()
    }
    missing = [k for k in expected if k not in declared]
    unexpected = [k for k in declared if k not in expected]
    shapes = [
        f"{k} {list(declared[k][0])} (expected {list(s)})"
        for k, (s, _) in expected.items()
        if k in declared and declared[k][0] != s
    ]
    kinds = [
        f"{k} {declared[k][1] or 'non-numeric'} (expected {kind})"
        for k, (_, kind) in expected.items()
        if k in declared and declared[k][1] != kind
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", shapes),
        ("wrong dtype", kinds),
    ):
        if items:
            problems.append(f"{label} ({len(items)}): {_first_few(items)}")
    if problems:
        raise InputError(
            f"{what} does not match the {config.encoder} BaSSL layout: " + "; ".join(problems)
        )


def _fill_buffers(state: dict, config: ModelConfig) -> None:
    """Buffers some files leave out: recomputed, they carry no learned information."""
    if "crn.shot_embedding.shot_embedding.weight" in state:
        seq = config.crn.seq_len
        state.setdefault("crn.attention_mask", additive_mask(torch.ones(1, seq)))
        state.setdefault("crn.shot_embedding.pos_ids", torch.arange(seq, dtype=torch.long))
    # torchvision files from before BatchNorm counted its batches (e.g. resnet50-19c8e357.pth)
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))


def read_checkpoint(path: str | Path) -> object:
    """Load a foreign checkpoint file as plain data (``weights_only``; never runs its code).

    A zip checkpoint's directory is checked first and the file memory-mapped; the one
    checkpoint in a tar archive is streamed to a temporary file (never whole into memory)
    after the archive's headers are checked.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    what = str(path)
    if archives.is_zip(path):
        stored = archives.check_zip(path, path.stat().st_size, what)
        return _torch_load(path, what, mmap=stored)
    if not archives.is_tar(path):
        return _torch_load(path, what)
    try:
        with tempfile.TemporaryFile(prefix="scenecut-") as tmp:
            name = archives.extract_checkpoint(path, tmp, what, f"a temporary copy of {what}")
            log.debug("reading %s from %s", name, path)
            inner = f"{name} in {what}"
            size = tmp.seek(0, 2)
            if archives.is_zip(tmp):
                archives.check_zip(tmp, size, inner)
            return _torch_load(tmp, inner)
    except OSError as error:  # the temporary file cannot be created
        raise OutputError(
            f"cannot unpack {what} into the temporary folder ({error.strerror or error}); "
            "set TMPDIR to a folder with space"
        ) from None


def read_any(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    """What ``weights import`` reads: a scenecut safetensors file (its configuration kept, so
    checked like ``load_state``), else a foreign checkpoint (``convert_checkpoint``). Returns
    the state, the configuration and where it came from (``"scenecut"`` or a ``SOURCES``)."""
    path = Path(path)
    if path.suffix == ".safetensors" and _has_config(path):
        state, config, _ = _read_safetensors(path, tensors=True)
        source = "scenecut"
    else:
        state, config, source = convert_checkpoint(
            read_checkpoint(path), str(path), folder=path.parent
        )
    check_finite(state, path)
    return state, config, source


def _has_config(path: Path) -> bool:
    from safetensors import SafetensorError, safe_open

    try:
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
        if not 0 < length <= MAX_HEADER:
            return False
        with safe_open(str(path), framework="pt") as f:
            return METADATA_KEY in (f.metadata() or {})
    except (SafetensorError, OSError):
        return False


def import_checkpoint(
    path: str | Path, source: str | None = None, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Read a foreign checkpoint (.pt/.pth/.ckpt, or a tar archive holding model-v1.ckpt) into
    our key layout, checked key by key and shape by shape against the model it implies.

    The result may hold only some of ``shot_encoder``/``crn``/``head_sbd`` (a torchvision or
    SCRL file is an encoder only); each part present is complete.
    """
    path = Path(path)
    state, config, _ = convert_checkpoint(
        read_checkpoint(path), str(path), source, config, folder=path.parent
    )
    return state, config


def convert_checkpoint(
    obj: object,
    what: str,
    source: str | None = None,
    config: ModelConfig | None = None,
    folder: Path | None = None,
) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    """``import_checkpoint`` on an already loaded object; also returns the detected source.
    ``folder``: where the file lies, for the ``configuration.json`` ModelScope keeps beside it."""
    try:
        source = source or detect_source(obj)
        state = convert_state_dict(obj, source, what)
        if config is None:
            config = infer_config(state)
            if source == "modelscope":
                config = _modelscope_config(config, folder)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    log.info("%s: %s checkpoint", what, source)
    if source == "scrl" and config.encoder == "resnet50-9ch":
        log.info("SCRL early-fusion encoder: importing as resnet50-9ch (not BaSSL's encoder)")
    _fill_buffers(state, config)
    parts = tuple(p for p in ALL_PARTS if any(k.startswith(p + ".") for k in state))
    if source == "modelscope":
        required = PARTS
    elif parts == ("lstm_head",):  # SCRL's BiLSTM alone: the head for its encoder's features
        required = parts
    else:
        required = ("shot_encoder",)
    _check(state, config, tuple(dict.fromkeys(required + parts)), f"{what} ({source})")
    with torch.device("meta"):
        probe = build(config)
    for part in parts:  # the authoritative check: torch's own strict loading, shapes included
        sub = {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part + ".")}
        try:
            getattr(probe, part).load_state_dict(sub, strict=True, assign=True)
        except RuntimeError as error:
            raise InputError(
                f"{what} ({source}): {part} does not load: {archives.reason(error)}"
            ) from None
    return state, config, source


# --------------------------------------------------------------------------------------------
# ModelScope's configuration.json: what its pipeline reads besides the weights

MODELSCOPE_THRESHOLD = 0.8  # its pipeline.save_threshold: a boundary where P > 0.8
MAX_CONFIGURATION = 1 << 20  # bytes; ModelScope's configuration.json is ~4 KB


def _modelscope_config(config: ModelConfig, folder: Path | None) -> ModelConfig:
    """``config`` with ModelScope's threshold, and what its ``configuration.json`` in
    ``folder`` says of the threshold, the window and the CRN's heads, if it is there."""
    found = read_modelscope_configuration(folder / "configuration.json") if folder else {}
    crn = config.crn
    if "heads" in found:
        crn = dataclasses.replace(crn, num_attention_heads=found["heads"])
    if found.get("neighbor_size", crn.neighbor_size) != crn.neighbor_size:
        raise InputError(
            f"its configuration.json samples {found['neighbor_size']} shots on each side of the "
            f"centre but the weights' position table holds {crn.neighbor_size} (ModelScope "
            "fails on this pair too); use the configuration.json that came with the weights"
        )
    config = dataclasses.replace(
        config, crn=crn, threshold=found.get("threshold", MODELSCOPE_THRESHOLD)
    )
    check_config(config)
    return config


def read_modelscope_configuration(path: Path) -> dict[str, float | int]:
    """The settings a ModelScope ``configuration.json`` gives that scenecut uses, as far as it
    gives them: ``threshold`` (``pipeline.save_threshold``), ``neighbor_size`` (the window:
    ``dataset.sampling_method.params.<name>.neighbor_size``) and ``heads`` (the CRN's
    ``num_attention_heads``). ``{}`` when there is no such file; a file that is not JSON, too
    big, or holds a bad value is an ``InputError``."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIGURATION + 1)
    except OSError as error:
        raise InputError(f"cannot read {path} ({error.strerror or error})") from None
    if len(raw) > MAX_CONFIGURATION:
        raise InputError(
            f"{path} is over {MAX_CONFIGURATION >> 20} MiB: not a ModelScope configuration"
        )
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InputError(f"{path} is not valid JSON ({archives.reason(error)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a ModelScope configuration (not a JSON object)")
    found: dict[str, float | int] = {}
    threshold = _json_at(data, ("pipeline", "save_threshold"), path)
    if threshold is not None:
        if not _real(threshold) or not 0 <= threshold <= 1:
            raise InputError(
                f"{path}: pipeline.save_threshold must be a number from 0 to 1, "
                f"not {ascii(threshold)[:40]}"
            )
        found["threshold"] = float(threshold)
    for what, block, setting in (
        ("neighbor_size", ("dataset", "sampling_method"), "neighbor_size"),
        ("heads", ("model", "contextual_relation_network"), "num_attention_heads"),
    ):
        name = _json_at(data, (*block, "name"), path)  # which entry of params is in use
        if name is None:
            continue
        if not isinstance(name, str):
            raise InputError(f"{path}: {'.'.join(block)}.name must be text, not {ascii(name)[:40]}")
        found[what] = _json_int(data, (*block, "params", name, setting), setting, path)
    found = {k: v for k, v in found.items() if v is not None}
    if found:
        log.info("%s: %s", path, ", ".join(f"{k} {v}" for k, v in found.items()))
    return found


def _json_at(data: dict, keys: tuple[str, ...], path: Path) -> object:
    """``data[k0][k1]...``, None where a key is missing; ``InputError`` where a step that
    should be an object is not."""
    for depth, key in enumerate(keys):
        if not isinstance(data, dict):
            where = ascii(".".join(k[:40] for k in keys[:depth]))[1:-1]
            raise InputError(f"{path}: {where} is not a JSON object")
        if key not in data:
            return None
        data = data[key]
    return data


def _json_int(data: dict, keys: tuple, name: str, path: Path) -> int | None:
    value = _json_at(data, keys, path)
    least, most = INT_LIMITS[name]
    if value is not None and (type(value) is not int or not least <= value <= most):
        raise InputError(
            f"{path}: {name} must be a whole number from {least} to {most}, not {ascii(value)[:40]}"
        )
    return value


def _real(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
