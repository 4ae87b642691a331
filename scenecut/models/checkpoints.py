"""Checkpoints: our safetensors files (the config in the metadata), and foreign ones converted.

Foreign ``.pt``/``.pth``/``.ckpt`` files (ModelScope, Kakao's Lightning, torchvision, SCRL) are
read only with ``torch.load(weights_only=True)`` and checked key by key and shape by shape
before use: nothing in a checkpoint is ever executed.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import tarfile
import zipfile
from pathlib import Path

import torch

from scenecut.errors import InputError
from scenecut.files import replacing
from scenecut.models.bassl import BaSSL, additive_mask, build
from scenecut.models.config import (
    ALL_PARTS,
    METADATA_KEY,
    PARTS,
    CRNConfig,
    ModelConfig,
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
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: config.to_json()})
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
    if path.suffix != ".safetensors":
        missing = [p for p in PARTS if not any(k.startswith(p + ".") for k in state)]
        if missing:
            raise InputError(
                f"{path} holds no {', '.join(missing)} weights, so it cannot score boundaries; "
                "use it to initialise training instead"
            )
    model = build(config)
    _check(state, config, parts_for(config), str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), config


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The tensors and configuration of a checkpoint, complete or not: a scenecut safetensors
    file, or a foreign checkpoint converted by ``import_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if path.suffix != ".safetensors":
        return import_checkpoint(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as error:
        raise InputError(f"{path} is not a readable safetensors file ({error})") from error
    if METADATA_KEY not in metadata:
        raise InputError(
            f"{path} has no scenecut model configuration in its metadata; "
            "import foreign weights with import_checkpoint first"
        )
    return state, ModelConfig.from_json(metadata[METADATA_KEY])


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


def _torch_load(data: io.BytesIO, what: str) -> object:
    try:
        return torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        listed = _unsafe_globals(data)  # every global, in zip files; else the first one
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
        data.seek(0)
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(data, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as again:
            raise InputError(
                f"refusing to load {what}: its training-framework objects ({', '.join(names)}) "
                f"need more than plain data to rebuild ({str(again).splitlines()[0]}); "
                "re-save ckpt['state_dict'] alone"
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"{what} is not a readable PyTorch checkpoint ({error})") from error


def _unsafe_globals(data: io.BytesIO) -> list[str]:
    data.seek(0)
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(data))
    except Exception:  # legacy (non-zip) files cannot be listed: refuse them like the rest
        return []
    finally:
        data.seek(0)


def _read_bytes(path: Path) -> io.BytesIO:
    """The checkpoint bytes, from the file itself or the one checkpoint inside a tar archive."""
    if not zipfile.is_zipfile(path) and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            wanted = [m for m in members if m.name.endswith("model-v1.ckpt")] or [
                m for m in members if m.name.endswith((".ckpt", ".pt", ".pth"))
            ]
            if len(wanted) != 1:
                names = ", ".join(m.name for m in wanted) or "none"
                raise InputError(
                    f"{path} should hold exactly one model-v1.ckpt (or .ckpt/.pt/.pth) file; "
                    f"found: {names}"
                )
            log.debug("reading %s from %s", wanted[0].name, path)
            return io.BytesIO(archive.extractfile(wanted[0]).read())
    return io.BytesIO(path.read_bytes())


def detect_source(obj: object) -> str:
    """Which layout a loaded checkpoint uses: one of ``SOURCES``."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a dict of tensors, got {type(obj).__name__}")
    wrapped = isinstance(obj.get("state_dict"), dict)
    keys = list(obj["state_dict"] if wrapped else obj)
    if any(str(k).startswith("module.encoder_q.") for k in keys):
        return "scrl"
    if any(str(k).startswith(("shot_encoder.", "crn.")) for k in keys):
        lightning = wrapped and ("epoch" in obj or "pytorch-lightning_version" in obj)
        return (
            "lightning"
            if lightning or any(str(k).startswith("loss.") for k in keys)
            else ("modelscope")
        )
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "torchvision"
    shown = ", ".join(map(str, keys[:8]))
    raise InputError(
        f"unrecognised checkpoint layout (first keys: {shown}); expected a ModelScope BaSSL "
        "pytorch_model.pt, a Kakao BaSSL model-v1.ckpt, a torchvision ResNet-50 .pth or an "
        "SCRL checkpoint"
    )


def convert_state_dict(sd: dict, source: str) -> dict[str, torch.Tensor]:
    """Rename a foreign state dict into our keys (``shot_encoder.*``, ``crn.*``, ``head_sbd.*``).

    ``sd`` is the flat state dict; for "lightning" and "scrl" the wrapping dict is accepted too.
    """
    if source not in SOURCES:
        raise InputError(f"unknown checkpoint source {source!r}; known: {', '.join(SOURCES)}")
    if source in ("lightning", "scrl") and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if source in ("modelscope", "lightning"):
        # Lightning pre-training files also hold the pretext heads (loss.head_*): not ours.
        keep = ("shot_encoder.", "crn.", "head_sbd.")
        out = {k: v for k, v in sd.items() if source == "modelscope" or k.startswith(keep)}
    elif source == "torchvision":
        out = {f"shot_encoder.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    else:
        prefix = "module.encoder_q."
        out = {
            "shot_encoder." + k[len(prefix) :]: v
            for k, v in sd.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith("fc.")
        }
        if not out:
            raise InputError("no module.encoder_q.* weights in this SCRL checkpoint")
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"checkpoint entry {key} is a {type(value).__name__}, not a tensor")
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def infer_config(sd: dict[str, torch.Tensor], heads: int | None = None) -> ModelConfig:
    """The ``ModelConfig`` that a converted state dict implies (heads cannot be read from
    weights: 8 for BaSSL's 768-d CRN unless ``heads`` says otherwise)."""
    conv1 = sd.get("shot_encoder.conv1.weight")
    if "shot_encoder.layer1.0.conv1.weight" in sd or conv1 is None:
        encoder = "resnet50-9ch" if conv1 is not None and conv1.shape[1] == 9 else "resnet50"
        input_dim = 2048
    else:
        encoder = "tiny"
        input_dim = sd["shot_encoder.conv2.weight"].shape[0]
    crn = CRNConfig(input_dim=input_dim)
    proj = sd.get("crn.shot_embedding.shot_embedding.weight")
    if proj is not None:
        hidden, input_dim = proj.shape
        layers = {k.split(".")[3] for k in sd if k.startswith("crn.encoder.layer.")}
        inter = sd.get("crn.encoder.layer.0.intermediate.dense.weight")
        positions = sd.get("crn.shot_embedding.position_embedding.weight")
        if heads is None:
            heads = 8 if hidden % 8 == 0 else 1
        crn = CRNConfig(
            input_dim=input_dim,
            hidden_size=hidden,
            num_hidden_layers=len(layers),
            num_attention_heads=heads,
            intermediate_size=inter.shape[0] if inter is not None else 4 * hidden,
            neighbor_size=(positions.shape[0] - 2) // 2 if positions is not None else 8,
        )
    resize = 224 if encoder == "resnet50-9ch" else 256  # SCRL extracts at Resize(224)
    return ModelConfig(encoder=encoder, crn=crn, resize=resize)


def _expected(config: ModelConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in build(config).state_dict().items()}


def _check(state: dict, config: ModelConfig, parts: tuple[str, ...], what: str) -> None:
    """Refuse ``state`` unless, for each of ``parts``, its keys and shapes are exactly ours."""
    expected = {k: s for k, s in _expected(config).items() if k.split(".")[0] in parts}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} (expected {list(s)})"
        for k, s in expected.items()
        if k in state and state[k].shape != s
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
            problems.append(f"{label} ({len(items)}): {', '.join(items[:10])}{more}")
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
    """Load a foreign checkpoint file as plain data (``weights_only``; never runs its code)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    return _torch_load(_read_bytes(path), str(path))


def import_checkpoint(
    path: str | Path, source: str | None = None, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Read a foreign checkpoint (.pt/.pth/.ckpt, or a tar archive holding model-v1.ckpt) into
    our key layout, checked key by key and shape by shape against the model it implies.

    The result may hold only some of ``shot_encoder``/``crn``/``head_sbd`` (a torchvision or
    SCRL file is an encoder only); each part present is complete.
    """
    state, config, _ = convert_checkpoint(read_checkpoint(path), str(path), source, config)
    return state, config


def convert_checkpoint(
    obj: object, what: str, source: str | None = None, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    """``import_checkpoint`` on an already loaded object; also returns the detected source."""
    source = source or detect_source(obj)
    log.info("%s: %s checkpoint", what, source)
    if source == "scrl":
        conv1 = obj.get("state_dict", obj).get("module.encoder_q.conv1.weight")
        if conv1 is not None and conv1.shape[1] == 9:
            log.info("SCRL early-fusion encoder: importing as resnet50-9ch (not BaSSL's encoder)")
    state = convert_state_dict(obj, source)
    config = config or infer_config(state)
    _fill_buffers(state, config)
    parts = tuple(p for p in PARTS if any(k.startswith(p + ".") for k in state))
    required = PARTS if source == "modelscope" else ("shot_encoder",)
    _check(state, config, tuple(dict.fromkeys(required + parts)), f"{what} ({source})")
    with torch.device("meta"):
        probe = build(config)
    for part in parts:  # the authoritative check: torch's own strict loading, shapes included
        sub = {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part + ".")}
        try:
            getattr(probe, part).load_state_dict(sub, strict=True, assign=True)
        except RuntimeError as error:
            raise InputError(f"{what} ({source}): {part} does not load: {error}") from error
    return state, config, source
