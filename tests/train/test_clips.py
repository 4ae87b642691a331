"""Saccade-VSSL's clip loader: focus masks, fixations, the items of the three datasets, the
quirk switches, evaluation clip positions, and the augmentation against PIL's."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter

from scenecut.errors import InputError
from scenecut.train.clips import (
    Augment,
    EvalClips,
    Quirks,
    SaccadeClips,
    TrainClips,
    augment,
    completion_cells,
    decode_frame,
    fixations,
    focus_mask,
)

W, H = 340, 256  # UCF101's jpegs_256 frames


def _write(folder: Path, frames) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for t, frame in enumerate(frames):
        paths.append(folder / f"frame{t + 1:06d}.jpg")
        Image.fromarray(frame).save(paths[-1], quality=95)
    return paths


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> list[Path]:
    """40 frames of a smooth colour field panning under fine detail."""
    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
    base = np.asarray(field.resize((W + 40, H), Image.BICUBIC), np.float32)
    base = base + rng.normal(0, 6, base.shape)
    frames = [np.clip(base[:, t : t + W], 0, 255).astype(np.uint8) for t in range(40)]
    return _write(tmp_path_factory.mktemp("clips") / "textured", frames)


@pytest.fixture(scope="module")
def gradient(tmp_path_factory) -> list[Path]:
    """40 grey frames darker on the left: any crop of one is flipped iff its left is brighter
    (colour jitter and blur keep the order of grey levels)."""
    ramp = np.linspace(0, 255, W)[None, :, None].repeat(H, 0).repeat(3, 2).astype(np.uint8)
    return _write(tmp_path_factory.mktemp("clips") / "gradient", [ramp] * 40)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> list[Path]:
    """60 flat frames, frame i at grey level 4i."""
    frames = [np.full((H, W, 3), 4 * i, np.uint8) for i in range(60)]
    return _write(tmp_path_factory.mktemp("clips") / "numbered", frames)


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# --- focus masks and fixations ---------------------------------------------------------------


def test_focus_mask_geometry() -> None:
    inner = focus_mask(24)  # the centre cell: 76 x 100, not clipped
    rows, cols = np.nonzero(inner)
    assert inner.shape == (128, 171) and inner.dtype == np.uint8
    assert set(np.unique(inner)) == {0, 255}
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (76, 100)
    assert inner[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert (rows.min(), cols.min()) == (63 - 38, 84 - 50)  # centre (18*3+9, 24*3+12)
    corner = focus_mask(0)  # clipped at the top and left borders: 47 x 62
    rows, cols = np.nonzero(corner)
    assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (0, 0, 47, 62)
    areas = [(focus_mask(c) > 0).mean() for c in range(49)]
    assert min(areas) >= 0.13 and max(areas) <= 0.35 and 0.25 <= np.mean(areas) <= 0.27
    assert (focus_mask(24, margin=0) > 0).sum() == 64 * 84  # the "25 %" window without margin
    with pytest.raises(ValueError, match="outside"):
        focus_mask(49)


def test_fixations_a_and_b_starts() -> None:
    rows = np.array([[3, 10, 30], [9, 40, 49], [12, 60, 90]])
    fix = fixations(rows, 100, completion=(1, 2, 3), rng=random.Random(0))
    # o = (end - start + 1) // 2 = 10, 5, 15; every A start fits (60 <= 100 - 16 - 15).
    assert fix == [(3, 10, 20), (9, 40, 45), (12, 60, 75)]
    late = fixations(np.array([[5, 90, 99]]), 100, completion=(1, 2, 3), rng=random.Random(0))
    assert late[0] == (5, 100 - 16 - 5, 100 - 16)  # A pulled back so that B ends in the video


def test_fixations_completion_dedup_and_none() -> None:
    triple = completion_cells(632)
    assert len(set(triple)) == 3 and triple == completion_cells(632) != completion_cells(1)
    rng = random.Random(0)
    # Fewer rows than focus_num: padded with the shared triple, starts drawn in 1..length-17.
    short = fixations(np.array([[7, 5, 12]]), 50, completion=triple, rng=rng)
    assert [f[0] for f in short] == [7, triple[0], triple[1]]
    for _, a, b in short[1:]:  # completion rows are (s, s + 16): o = 8
        assert 1 <= a <= 50 - 16 - 8 and b == a + 8
    # A (3,) row is one fixation (loadtxt without ndmin=2 would give this shape).
    assert fixations(np.array([7, 5, 12]), 50, completion=triple, rng=rng)[0] == (7, 5, 9)
    # Dedup inspects the first 3 rows only: 4, 4, 6 -> 4, 6 + a completion; cell 8 not used.
    rows = np.array([[4, 0, 9], [4, 10, 19], [6, 20, 29], [8, 30, 39]])
    assert [f[0] for f in fixations(rows, 60, completion=triple, rng=rng)] == [4, 6, triple[0]]
    assert [f[0] for f in fixations(rows, 60, dedup=False, completion=triple, rng=rng)] == [4, 4, 6]
    # No scanpath: every fixation random, cells the triple; starts redrawn at every call.
    draws = {tuple(fixations(None, 200, completion=triple, rng=rng)) for _ in range(5)}
    assert len(draws) > 1 and all([f[0] for f in d] == list(triple) for d in draws)


def test_fixation_longer_than_the_video_is_clamped_at_zero() -> None:
    # o = 40 > length - 16 = 24: the reference's A start would be -16 and wrap to the end.
    fix = fixations(np.array([[2, 0, 79]]), 40, focus_num=1, completion=(0,), rng=random)
    assert fix == [(2, 0, 24)]
    # A tiny video (length 17): completion starts stay in range instead of raising.
    for _, a, b in fixations(None, 17, completion=(0, 1, 2), rng=random.Random(3)):
        assert 0 <= a <= b <= 1


# --- items -----------------------------------------------------------------------------------


def test_saccade_item_shapes_dtypes_and_slots(textured) -> None:
    rows = np.array([[3, 0, 20], [24, 5, 12], [40, 20, 39]])
    dataset = SaccadeClips([(textured, None, 0), (textured, rows, 7)])
    _seed(0)
    item = dataset[1]
    assert item["clips"].shape == (6, 3, 16, 112, 112) and item["clips"].dtype == torch.float32
    assert item["masks"].shape == (6, 1, 112, 112) and item["masks"].dtype == torch.float32
    assert item["clips"].min() >= 0 and item["clips"].max() <= 1
    assert item["masks"].min() >= 0 and item["masks"].max() <= 1 and item["masks"].max() > 0.5
    assert item["slot"].tolist() == [3, 4, 5, 3, 4, 5] and item["slot"].dtype == torch.int64
    assert item["label"].item() == 7 and item["index"].item() == 1
    assert item["label"].dtype == item["index"].dtype == torch.int64
    small = SaccadeClips([(textured, rows, 0)], clip_len=8, size=64, focus_num=2)[0]
    assert small["clips"].shape == (4, 3, 8, 64, 64) and small["slot"].tolist() == [0, 1, 0, 1]


def test_items_are_deterministic_under_a_seed(textured) -> None:
    dataset = SaccadeClips([(textured, None, 0)])
    _seed(5)
    first = dataset[0]
    _seed(5)
    again = dataset[0]
    _seed(6)
    other = dataset[0]
    assert torch.equal(first["clips"], again["clips"]) and torch.equal(
        first["masks"], again["masks"]
    )
    assert not torch.equal(first["clips"], other["clips"])


def _side(image: torch.Tensor) -> int:
    """+1 if the left half holds more (or is brighter), -1 if the right, 0 if unclear."""
    left, right = image[..., :56].sum().item(), image[..., 56:].sum().item()
    if abs(left - right) <= 0.02 * image[..., :1, :].numel() * 112:
        return 0
    return 1 if left > right else -1


def test_mask_flip_quirk(gradient) -> None:
    """Cells 0, 7, 14 lie in the left column: uncropped, the mask is on the left, like the dark
    side of the frames. With mask_flip=False every clip and its mask flip together."""
    rows = np.array([[0, 0, 20], [7, 5, 25], [14, 10, 30]])
    agree = {}
    for flip in (True, False):
        dataset = SaccadeClips([(gradient, rows, 0)], quirks=Quirks(mask_flip=flip))
        _seed(1)
        pairs = []
        for _ in range(4):
            item = dataset[0]
            for clip, mask in zip(item["clips"], item["masks"], strict=True):
                clip_side, mask_side = -_side(clip), _side(mask)
                if clip_side and mask_side:
                    pairs.append(clip_side == mask_side)
        assert len(pairs) >= 8
        agree[flip] = pairs
    assert all(agree[False])
    assert not all(agree[True])  # flipped apart from their clips (spec 9.6)


def test_mask_jitter_quirk(gradient) -> None:
    """The draws do not depend on the quirks: the same seed gives the same clips. Without the
    mask jitter a mask is its crop of the 0/255 window (its common value 0 or 1); with it,
    brightness and contrast move the levels (spec 9.7)."""
    rows = np.array([[10, 0, 20], [24, 5, 25], [38, 10, 30]])
    items = {}
    for jitter in (True, False):
        dataset = SaccadeClips([(gradient, rows, 0)], quirks=Quirks(mask_jitter=jitter))
        _seed(2)
        items[jitter] = [dataset[0] for _ in range(4)]
    for quirky, clean in zip(items[True], items[False], strict=True):
        assert torch.equal(quirky["clips"], clean["clips"])

    def common(mask: torch.Tensor) -> float:
        values, counts = mask.unique(return_counts=True)
        return values[counts.argmax()].item()

    clean_masks = torch.cat([item["masks"] for item in items[False]])
    quirky_masks = torch.cat([item["masks"] for item in items[True]])
    assert all(common(m) in (0.0, 1.0) for m in clean_masks)
    assert sum(common(m) not in (0.0, 1.0) for m in quirky_masks) >= 3


def test_test_jitter_quirk(textured) -> None:
    """Clean: evaluation clips are the same whatever the seed, and are PIL's centre crop
    196 -> 112 (bicubic). By default some clips are colour-jittered (p = 0.3, spec 9.12)."""
    videos = [(textured, None, 3)]
    clean = EvalClips(videos, quirks=Quirks(test_jitter=False))
    _seed(0)
    a = clean[0]
    _seed(1)
    b = clean[0]
    assert torch.equal(a["clips"], b["clips"]) and a["clips"].shape == (10, 3, 16, 112, 112)
    assert a["label"].item() == 3 and "masks" not in a
    start = clean.starts(0)[0]
    ref = Image.open(textured[start]).convert("RGB").crop((72, 30, 268, 226))
    ref = TF.to_tensor(ref.resize((112, 112), Image.BICUBIC))
    assert (a["clips"][0, :, 0] - ref).abs().max() <= 1.5 / 255
    quirky = EvalClips(videos)
    _seed(0)
    jittered = [not torch.equal(x, y) for x, y in zip(quirky[0]["clips"], a["clips"], strict=True)]
    assert 1 <= sum(jittered) <= 7


def _indices(clip: torch.Tensor) -> list[int]:
    """The frame numbers of a clip of the numbered video (grey level 4i)."""
    return [round(frame.mean().item() * 255 / 4) for frame in clip.unbind(1)]


def test_eval_clip_positions(numbered) -> None:
    dataset = EvalClips([(numbered, None, 0)], quirks=Quirks(test_jitter=False))
    length = len(numbered) - 1  # 59: the last frame is never used
    centres = np.linspace(8, length - 8, 10)
    assert dataset.starts(0) == [int(c - 8) for c in centres]
    clips = dataset[0]["clips"]
    for clip, start in zip(clips, dataset.starts(0), strict=True):
        assert _indices(clip) == list(range(start, start + 16))
    assert dataset.starts(0)[-1] + 15 == length - 1


def test_cluster_pass_clips_and_masks(numbered) -> None:
    """masks=True: one clip per fixation from its start, clamped to length - 16, with the mask
    of its cell (spec 4.3). Cell 5 is top right, cell 40 bottom right."""
    rows = np.array([[5, 3, 20], [5, 10, 30], [40, 50, 58]])
    dataset = EvalClips([(numbered, rows, 0)], masks=True, quirks=Quirks(test_jitter=False))
    _seed(0)
    item = dataset[0]
    assert item["clips"].shape == (3, 3, 16, 112, 112) and item["masks"].shape == (3, 1, 112, 112)
    starts = [_indices(clip)[0] for clip in item["clips"]]
    assert starts[:2] == [3, 59 - 16] and 1 <= starts[2] <= 59 - 17
    for mask, (top, right) in zip(item["masks"][:2, 0], [(True, True), (False, True)], strict=True):
        rows_at, cols_at = torch.nonzero(mask > 0.5, as_tuple=True)
        assert (rows_at.float().mean() < 56) == top and (cols_at.float().mean() > 56) == right
    swapped = EvalClips(
        [(numbered, None, 0)], masks=True, rows_for_masks=[rows], quirks=Quirks(test_jitter=False)
    )
    assert torch.equal(swapped[0]["masks"][:2], item["masks"][:2])
    # The pre-training dataset's settings: 2 fixations, no dedup (5 at 3, then 5 at 10).
    source = SaccadeClips([(numbered, rows, 0)], focus_num=2, dedup=False)
    shared = EvalClips(
        [(numbered, None, 0)], masks=True, rows_for_masks=source, quirks=Quirks(test_jitter=False)
    )[0]
    assert shared["masks"].shape == (2, 1, 112, 112)
    assert [_indices(clip)[0] for clip in shared["clips"]] == [3, 10]
    assert torch.equal(shared["masks"][0], shared["masks"][1])


def test_train_clips(numbered) -> None:
    _seed(0)
    item = TrainClips([(numbered, None, 4)])[0]
    assert item["clips"].shape == (1, 3, 16, 112, 112) and item["label"].item() == 4
    assert item["clips"].min() >= 0 and item["clips"].max() <= 1


# --- the augmentation against PIL's ----------------------------------------------------------


def _pil_augment(paths, mask, aug: Augment, size: int = 112):
    """The reference's per-frame PIL steps (spec 5) for fixed parameters."""
    x, y, w, h = aug.box
    images = [Image.open(p).convert("RGB") for p in paths] + [Image.fromarray(mask)]
    images = [im.crop((x, y, x + w, y + h)).resize((size, size), Image.BICUBIC) for im in images]
    adjust = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }
    for name, factor in aug.jitter:
        images = [adjust[name](im, factor) for im in images]
    if aug.blur:
        sigmas = [aug.blur] * len(paths) + [aug.mask_blur]
        images = [
            im.filter(ImageFilter.GaussianBlur(s)) for im, s in zip(images, sigmas, strict=True)
        ]
    flips = [aug.flip] * len(paths) + [aug.mask_flip]
    images = [
        im.transpose(Image.FLIP_LEFT_RIGHT) if f else im
        for im, f in zip(images, flips, strict=True)
    ]
    tensors = [TF.to_tensor(im) for im in images]
    return torch.stack(tensors[:-1], 1), tensors[-1]


def test_augmentation_matches_pil(textured) -> None:
    """One clip of ours against PIL's steps with the same crop box, jitter factors and flips.

    Tolerances (in 8-bit levels): crop + resize is torch's port of PIL's antialiased bicubic,
    at most 1 level apart. Brightness, contrast and saturation are the same arithmetic (8 bits
    after each step, PIL's truncation): a 1-level difference from the resize, scaled by the
    contrast and saturation factors (1.3 x 1.4), plus a rounding gives at most 3, in under
    0.5 % of the values. Hue is not the same arithmetic: PIL round-trips through its 8-bit HSV
    (hue in 1/255 turns, saturation truncated), we through OpenCV's; each is up to about 10
    levels (mean 0.5) from the exact float hue shift, so against each other up to about twice
    that, 1 level on average. PIL's Gaussian blur is three box blurs approximating the
    Gaussian we apply: a few levels apart on sharp edges, under 1 on average."""
    paths = textured[:4]
    frames = [decode_frame(p) for p in paths]
    mask = np.asarray(Image.fromarray(focus_mask(9)).resize((W, H), Image.BICUBIC))
    box = (37, 21, 233, 190)

    def diff(aug):
        ours, ours_mask = augment(frames, mask, aug)
        ref, ref_mask = _pil_augment(paths, mask, aug)
        assert ours.shape == ref.shape == (3, 4, 112, 112)
        levels = ((ours - ref) * 255).round().abs()  # both are k / 255 values
        return levels, ((ours_mask - ref_mask) * 255).round().abs()

    clip, mask_d = diff(Augment(box, flip=True, mask_flip=False))
    assert clip.max() <= 1 and mask_d.max() <= 1
    no_hue = (("contrast", 1.3), ("brightness", 0.75), ("saturation", 1.4))
    clip, mask_d = diff(Augment(box, no_hue, flip=True, mask_flip=False, mask_jitter=True))
    assert clip.max() <= 3 and (clip > 1.5).float().mean() <= 0.005 and mask_d.max() <= 1
    jitter = (("contrast", 1.3), ("hue", -0.07), ("brightness", 0.75), ("saturation", 1.4))
    clip, mask_d = diff(Augment(box, jitter, flip=False, mask_flip=True, mask_jitter=True))
    assert clip.max() <= 20 and clip.mean() <= 1.5 and mask_d.max() <= 1
    clip, mask_d = diff(Augment(box, blur=1.5, mask_blur=0.8, mask_jitter=True))
    assert clip.max() <= 10 and clip.mean() <= 1 and mask_d.max() <= 10 and mask_d.mean() <= 1
    # The mask's jitter in numbers (spec 9.7): brightness 0.6 takes 255 to 153, contrast 0.6
    # blends with the mask's own mean level m: 255 to m + 0.6 (255 - m), 0 to 0.4 m.
    whole = (0, 0, W, H)
    _, plain = augment(frames, mask, Augment(whole))
    _, bright = augment(frames, mask, Augment(whole, (("brightness", 0.6),), mask_jitter=True))
    _, contrast = augment(frames, mask, Augment(whole, (("contrast", 0.6),), mask_jitter=True))
    m = int(plain.mean().item() * 255 + 0.5)
    assert round(plain.max().item() * 255) == 255 and round(bright.max().item() * 255) == 153
    levels = sorted({round(v * 255) for v in (contrast.min().item(), contrast.max().item())})
    assert levels == [int(0.4 * m), int(m + 0.6 * (255 - m))]


# --- bad input -------------------------------------------------------------------------------


def test_bad_videos_and_frames(tmp_path, numbered) -> None:
    with pytest.raises(InputError, match="at least 17"):
        SaccadeClips([(numbered[:16], None, 0)])
    with pytest.raises(InputError, match="outside the 7x grid"):
        SaccadeClips([(numbered, np.array([[49, 0, 10]]), 0)])
    with pytest.raises(InputError, match="whole"):
        SaccadeClips([(numbered, np.array([[1.5, 0, 10]]), 0)])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a picture" * 10)
    with pytest.raises(InputError, match="not a JPEG"):
        decode_frame(garbage)
    # A 60000 x 60000 frame header in a few bytes: refused before any decoding.
    bomb = tmp_path / "bomb.jpg"
    sof = b"\xff\xc0\x00\x11\x08" + (60000).to_bytes(2, "big") * 2 + b"\x03" + b"\x01\x22\x00" * 3
    bomb.write_bytes(b"\xff\xd8" + sof + b"\xff\xd9")
    with pytest.raises(InputError, match="larger than 8192"):
        decode_frame(bomb)
    broken = tmp_path / "broken"
    broken.mkdir()
    paths = [broken / f"{i:03d}.jpg" for i in range(20)]
    for path in paths:
        path.write_bytes(numbered[0].read_bytes()[:2000])  # cut short after the header
    with pytest.raises(InputError, match="cannot decode"):
        TrainClips([(paths, None, 0)])[0]
