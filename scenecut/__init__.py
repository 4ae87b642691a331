"""scenecut: cut long videos into scenes.

>>> import scenecut
>>> result = scenecut.segment("movie.mp4")
>>> [(s.start, s.end) for s in result.scenes]
>>> scenecut.write_results(result, Path("out"), ["json", "edl"], overwrite=False)

Everything here imports without torch, av or scenedetect (they load when a video is decoded
or a network runs), so ``import scenecut`` and ``scenecut --help`` stay fast. Binding the
function ``segment`` after the submodule import keeps ``scenecut.segment`` the function.
"""

from scenecut.models.options import InferenceOptions
from scenecut.output.formats import write_results
from scenecut.output.readers import load_result
from scenecut.result import Scene, SegmentResult, Settings, Shot, VideoInfo
from scenecut.segment import SegmentOptions, segment
from scenecut.version import __version__

__all__ = [
    "InferenceOptions",
    "Scene",
    "SegmentOptions",
    "SegmentResult",
    "Settings",
    "Shot",
    "VideoInfo",
    "__version__",
    "load_result",
    "segment",
    "write_results",
]
