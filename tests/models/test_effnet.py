"""EfficientNet-Lite0: the shipped ImageNet weights load into our network and see photos."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from scenecut.models import effnet  # noqa: E402
from scenecut.models.runner import preprocess  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skdata, name)()[..., :3] for name in PHOTOS}


@pytest.fixture(scope="module")
def classifier():
    return effnet.load_lite0(classes=1000)


def test_weights_map_onto_every_parameter():
    net = effnet.load_lite0(classes=1000)
    state = torch.load(effnet.weights_file(), map_location="cpu", weights_only=True)
    ours = net.state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.01)


@pytest.mark.parametrize(
    ("name", "classes"),
    [("chelsea", range(281, 286)), ("coffee", [967]), ("rocket", [657, 744, 812])],
)
def test_imagenet_classes_of_known_photos(photos, classifier, name, classes):
    """Checks the whole mapping at once: key layout, SAME padding, ReLU6, input scaling."""
    x = torch.from_numpy(photos[name])[None]
    x = preprocess(x, 256, 224, effnet.MEAN, effnet.STD, torch.device("cpu"))
    with torch.inference_mode():
        probs = classifier(x).softmax(dim=-1)[0]
    assert int(probs.argmax()) in classes
    assert float(probs[list(classes)].sum()) > 0.5


def _crops(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    ch, cw = int(h * 0.75), int(w * 0.75)
    return image[:ch, :cw], image[h - ch :, w - cw :]


def test_two_crops_of_a_photo_are_closer_than_other_photos(photos):
    encoder = effnet.EfficientNetEncoder(precision="fp32")
    feats = {}
    for name, image in photos.items():
        a, b = _crops(image)
        pair = [encoder.features(torch.from_numpy(np.ascontiguousarray(c))[None]) for c in (a, b)]
        feats[name] = [torch.nn.functional.normalize(f, dim=1)[0] for f in pair]
    for name, (a, b) in feats.items():
        same = float(a @ b)
        others = [float(a @ other[1]) for key, other in feats.items() if key != name]
        assert same > max(others), (name, same, max(others))


def test_shot_embeddings_shape_and_confidence(photos):
    encoder = effnet.EfficientNetEncoder(precision="fp32", batch_images=4)
    picture = np.ascontiguousarray(photos["coffee"][:224, :320])
    black = np.zeros_like(picture)
    shots = np.stack([np.stack([picture] * 3), np.stack([black] * 3)])
    emb = encoder.embed(shots)
    assert emb.shape == (2, 1280) and emb.dtype == np.float32
    norms = np.linalg.norm(emb, axis=1)
    assert norms[0] == pytest.approx(1.0, abs=2e-3)
    assert norms[1] < 0.05  # a black shot says nothing about the place


def test_same_padding_matches_tensorflow_arithmetic():
    conv = effnet.SameConv(1, 1, 3, 2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 4, 4)
    y = conv(x)
    # TF "SAME", stride 2, even input: output 2x2, one row/column of zeros at bottom/right only
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]
