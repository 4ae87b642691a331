"""Worker processes that do not run the caller's script again.

Python's "spawn" start method makes every new process import the parent's ``__main__`` first
(as ``__mp_main__``): a script that calls ``scenecut.segment`` at its top level, without the
``if __name__ == "__main__":`` guard, would run again in each decode or batch worker (and fail
there, since a process still starting may not start others). Our workers need nothing from
``__main__``: what they run and are sent lives in ``scenecut``. So while one of them starts,
``__main__`` does not say where it came from, and the new process skips it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_MISSING = object()


@contextlib.contextmanager
def without_main() -> Iterator[None]:
    """Processes started (``spawn``) inside this block do not import ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _lock:
        spec = main.__dict__.get("__spec__", _MISSING)
        file = main.__dict__.get("__file__", _MISSING)
        main.__spec__ = None
        main.__dict__.pop("__file__", None)
        try:
            yield
        finally:
            if spec is _MISSING:
                main.__dict__.pop("__spec__", None)
            else:
                main.__spec__ = spec
            if file is not _MISSING:
                main.__file__ = file
