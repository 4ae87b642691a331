"""scenecut: cut long videos into scenes.

>>> import scenecut
>>> result = scenecut.segment("movie.mp4")
>>> [(s.start, s.end) for s in result.scenes]
"""

__version__ = "0.1.0"

# segment.py keeps its heavy imports (torch, av, scenedetect) inside functions, so importing it
# here is cheap and `scenecut --help` stays fast. Binding the function after the submodule import
# keeps `scenecut.segment` the function, not the module.
from scenecut.segment import SegmentOptions, segment

__all__ = ["SegmentOptions", "__version__", "segment"]
