"""How far `segment`'s BaSSL features and boundary probabilities are from the reference's own
input path (issue 15, points 1 and 2), on the same shots and the same network.

The reference: every frame decoded by OpenCV's `VideoCapture` (what ModelScope's pipeline
uses), the first, middle (`start + (end - 1 - start) // 2`) and last frame of each shot,
torchvision's `Resize(256, BICUBIC)` + `CenterCrop(224)` + `ToTensor` + `Normalize` on PIL
images, the ResNet-50 per keyframe, the mean over the 3 keyframes, then the CRN. Ours:
`scenecut.segment` with the same checkpoint, its shot features and probabilities as the scorer
gives them. The network has seeded random weights, in fp32 on the CPU.

    .venv/bin/python bench/reference_input.py [VIDEO ...]

Prints per video: keyframes that are not the rule's frame, the largest relative difference of
a shot feature (L2 of the difference over L2 of the reference) and the largest absolute
difference of a boundary probability. Runs against any checkout (`--source DIR`): the "before"
of the issue is this script on the code before the change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "sintel_trailer_480x204.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="*", type=Path, default=[DEMO])
    parser.add_argument("--source", type=Path, default=ROOT, help="the scenecut checkout to run")
    args = parser.parse_args()
    sys.path.insert(0, str(args.source))

    import cv2
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    from scenecut.models import bassl, checkpoints
    from scenecut.models.config import ModelConfig
    from scenecut.models.inference import BaSSLScorer, boundary_probs
    from scenecut.segment import segment

    torch.manual_seed(15)
    config = ModelConfig()
    model = bassl.build(config).eval()
    folder = Path(tempfile.mkdtemp())
    weights = folder / "random.safetensors"
    checkpoints.save_state(model.state_dict(), config, weights)

    class Recording(BaSSLScorer):
        features: list

        def embed(self, keyframes):
            out = super().embed(keyframes)
            self.features.append(out)
            return out

    transform = T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(config.mean, config.std),
        ]
    )
    print(f"scenecut from {args.source}")
    print("video | shots | keyframes off the rule | max feature rel. diff | max prob. diff")
    for video in args.videos:
        scorer = Recording.from_file(weights, precision="fp32")
        scorer.features = []
        result = segment(video, scorer=scorer, model=str(weights))
        ours = np.concatenate(scorer.features)
        frames = []
        capture = cv2.VideoCapture(str(video))
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(bgr)
        reference, off = [], 0
        with torch.inference_mode():
            for shot in result.shots:
                last = shot.end - 1
                wanted = (shot.start, shot.start + (last - shot.start) // 2, last)
                off += sum(a != b for a, b in zip(shot.keyframes, wanted, strict=True))
                images = torch.stack(
                    [transform(Image.fromarray(frames[i][..., ::-1].copy())) for i in wanted]
                )
                reference.append(model.shot_encoder(images).mean(0).numpy())
            reference = np.stack(reference)
            probs_ref = boundary_probs(model, torch.from_numpy(reference)).numpy()
        rel = np.linalg.norm(ours - reference, axis=1) / np.linalg.norm(reference, axis=1)
        probs = np.asarray(result.boundary_scores)
        print(
            f"{video.name} | {len(result.shots)} | {off} of {3 * len(result.shots)} | "
            f"{rel.max():.2e} | {np.abs(probs - probs_ref).max():.2e}"
        )


if __name__ == "__main__":
    main()
