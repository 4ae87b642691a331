"""Frame times as text: truncated seconds, clock times, SMPTE timecodes, rational seconds.

Seconds and timecodes are truncated to the millisecond, never rounded, so a written time never
lies past the frame it names.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# --- time formatting -------------------------------------------------------------------------


def millis(seconds: Fraction) -> int:
    return math.floor(seconds * 1000)


def seconds_str(seconds: Fraction) -> str:
    """Non-negative seconds with 3 decimals, truncated: ``Fraction(1001, 30000)`` -> ``"0.033"``."""
    ms = millis(seconds)
    return f"{ms // 1000}.{ms % 1000:03d}"


def timecode(seconds: Fraction) -> str:
    """Non-negative seconds as ``HH:MM:SS.mmm``, truncated to the millisecond."""
    return clock(millis(seconds), ".")


def clock(ms: int, separator: str) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}{separator}{ms % 1000:03d}"


def truncated_seconds(seconds: Fraction) -> float:
    return millis(seconds) / 1000


# --- SMPTE timecodes and rational seconds ----------------------------------------------------


def dropped_frames(fps: Fraction) -> int:
    """Frame numbers drop-frame timecode skips a minute: 2 at 29.97, 4 at 59.94 (8 at 119.88)."""
    base = round(fps)
    return base // 15 if fps.denominator == 1001 and base % 30 == 0 else 0


def smpte_timecode(frame: int, fps: Fraction, drop_frame: bool | None = None) -> str:
    """Frame index as SMPTE ``HH:MM:SS:FF`` counting ``round(fps)`` frames a second.

    At 29.97 and 59.94 fps the timecode is drop-frame (``HH:MM:SS;FF``) unless ``drop_frame`` is
    False: frame numbers 00 and 01 (00-03 at 59.94) are skipped at the start of every minute
    except each tenth, so the timecode keeps up with the clock. Frame 1800 at 29.97 fps is
    ``00:01:00;02``.
    """
    if frame < 0:
        raise ValueError(f"frame must be >= 0, not {frame}")
    base = round(fps)
    drop = dropped_frames(fps) if drop_frame is None or drop_frame else 0
    if drop:
        per_minute = base * 60 - drop
        per_ten_minutes = per_minute * 10 + drop
        tens, rest = divmod(frame, per_ten_minutes)
        skipped = drop * 9 * tens
        if rest > drop:
            skipped += drop * ((rest - drop) // per_minute)
        frame += skipped
    seconds, frames = divmod(frame, base)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    separator = ";" if drop else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


_TIMECODE = re.compile(r"(\d\d):(\d\d):(\d\d)([:;])(\d\d)")


def parse_timecode(text: str) -> tuple[int, int, int, int, bool]:
    """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` for drop-frame) as hours, minutes, seconds, frames and
    the drop-frame flag. ``ValueError`` saying what is wrong; the frames are checked against a
    rate by ``timecode_frame``."""
    match = _TIMECODE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a timecode like 01:00:00:00 (01:00:00;00 drop-frame)")
    hours, minutes, seconds, frames = (int(match[i]) for i in (1, 2, 3, 5))
    if minutes > 59 or seconds > 59:
        raise ValueError(f"{text} has {max(minutes, seconds)} minutes or seconds (00-59)")
    return hours, minutes, seconds, frames, match[4] == ";"


def timecode_frame(text: str, fps: Fraction) -> int:
    """The frame index SMPTE timecode ``text`` names at ``fps``: ``smpte_timecode`` inverted.

    ``ValueError`` for a timecode that does not exist at ``fps``: frames past ``round(fps)``, a
    drop-frame timecode at a rate other than 29.97 or 59.94, or a number drop-frame skips.
    """
    hours, minutes, seconds, frames, drop_frame = parse_timecode(text)
    base = round(fps)
    rate = f"{float(fps):.6g} fps"
    if frames >= base:
        raise ValueError(f"{text} has frame {frames}, but {rate} counts frames 00-{base - 1:02d}")
    drop = dropped_frames(fps) if drop_frame else 0
    if drop_frame and not drop:
        raise ValueError(
            f"{text} is drop-frame (;), which only 29.97 and 59.94 fps have, not {rate}"
        )
    if drop and seconds == 0 and minutes % 10 and frames < drop:
        raise ValueError(f"{text} is a number drop-frame timecode skips")
    total_minutes = hours * 60 + minutes
    return (
        (total_minutes * 60 + seconds) * base
        + frames
        - drop * (total_minutes - total_minutes // 10)
    )


def rational_seconds(frames: int, fps: Fraction) -> str:
    """Exact seconds for ``frames`` frames, FCPXML style: ``1001/24000s``, ``2s``, ``0s``."""
    seconds = Fraction(frames) / fps
    if seconds.denominator == 1:
        return f"{seconds.numerator}s"
    return f"{seconds.numerator}/{seconds.denominator}s"
