"""Editor timelines: CMX 3600 EDL, OpenTimelineIO, FCPXML, FCP7 XML (Premiere) and MLT.

Every format counts whole frames at one timeline rate (``editor_rate``) from the video's start
timecode. Constant-frame-rate video keeps its own frame numbers. In variable-frame-rate video a
frame number says nothing about time, so each scene boundary goes through its real timestamp:
timeline frame = round(seconds from frame 0 x timeline rate), and editors (which play VFR media
by its timestamps) cut where the JSON's times say, within half a timeline frame.
"""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from math import gcd

from scenecut.errors import UsageError
from scenecut.output.timecode import (
    dropped_frames,
    parse_timecode,
    rational_seconds,
    smpte_timecode,
    timecode_frame,
)
from scenecut.result import Scene, SegmentResult, VideoInfo

log = logging.getLogger(__name__)

# The rates editors offer for a sequence; a VFR video's timeline takes the nearest one.
EDITOR_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")
)


def editor_rate(video: VideoInfo) -> Fraction:
    """Frames a second of the editor timeline: the video's rate; for variable-frame-rate video
    the standard rate nearest its average (25 for a 30/15/30 fps file averaging 25)."""
    if not video.vfr:
        return video.fps
    return min(EDITOR_RATES, key=lambda rate: abs(rate / video.fps - 1))


def start_frame(video: VideoInfo) -> int:
    """The timeline frame of the video's start timecode (0 without one); ``ValueError`` when
    the timecode does not exist at ``editor_rate(video)``."""
    if video.start_timecode is None:
        return 0
    return timecode_frame(video.start_timecode, editor_rate(video))


def check_start_timecode(given: str | None) -> None:
    """``UsageError`` for a ``--start-timecode`` that is no timecode at all; whether it exists
    at the video's rate is known once the video is (``with_start_timecode``)."""
    if given is not None:
        try:
            parse_timecode(given)
        except ValueError as exc:
            raise UsageError(f"--start-timecode: {exc}") from None


def with_start_timecode(video: VideoInfo, given: str | None) -> VideoInfo:
    """``video`` with the start timecode editor files count from: ``given`` (the user's) or
    the container's. A given one that does not fit the video's rate is a ``UsageError``; the
    container's is then dropped with a warning."""
    text = given or video.start_timecode
    if text is None:
        return video
    changed = dataclasses.replace(video, start_timecode=text)
    try:
        start_frame(changed)
    except ValueError as exc:
        if given:
            raise UsageError(f"{video.path}: --start-timecode: {exc}") from None
        log.warning("%s: its start timecode is not used: %s", video.path, exc)
        return dataclasses.replace(video, start_timecode=None)
    return changed


@dataclass(frozen=True)
class Timeline:
    """Frames of one video on an editor timeline at ``rate``, counted from the start timecode."""

    video: VideoInfo
    rate: Fraction
    start: int  # timeline frame of the video's first frame (its start timecode)
    drop_frame: bool

    @classmethod
    def of(cls, video: VideoInfo) -> Timeline:
        rate = editor_rate(video)
        tc = video.start_timecode
        drop = ";" in tc if tc else bool(dropped_frames(rate))
        return cls(video, rate, start_frame(video), drop)

    def frame(self, index: int) -> int:
        """Frames at ``rate`` from the video's first frame to the start of frame ``index``."""
        if not self.video.vfr:
            return index
        return round(self.video.time_of(index) * self.rate)

    @property
    def length(self) -> int:
        return self.frame(self.video.frame_count)

    def timecode(self, frame: int) -> str:
        """SMPTE timecode of ``frame`` timeline frames after the start timecode."""
        return smpte_timecode(self.start + frame, self.rate, self.drop_frame)

    def seconds(self, frame: int) -> str:
        return rational_seconds(self.start + frame, self.rate)

    def spans(self, scenes: list[Scene]) -> list[tuple[Scene, int, int]]:
        """(scene, first frame, end frame) per scene, in timeline frames from the video's start;
        a scene shorter than half a timeline frame still keeps one."""
        spans = []
        for scene in scenes:
            first = self.frame(scene.start)
            spans.append((scene, first, max(first + 1, self.frame(scene.end))))
        return spans


def scene_name(scene: Scene, count: int) -> str:
    return f"Scene {scene.index + 1:0{max(3, len(str(count)))}d}"


def _file_url(video: VideoInfo) -> str:
    return video.path.absolute().as_uri()


def _xml(root: ET.Element, doctype: str) -> str:
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE {doctype}>\n{body}\n'


def _add(parent: ET.Element, tag: str, text: object = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = str(text)
    return element


# --- EDL -------------------------------------------------------------------------------------


def to_edl(result: SegmentResult) -> str:
    """CMX 3600 EDL, one cut per scene; out points exclusive; source and record timecodes
    both count from the video's start timecode (00:00:00:00 without one)."""
    video = result.video
    timeline = Timeline.of(video)
    lines = [
        f"TITLE: {video.path.stem}",
        f"FCM: {'DROP FRAME' if timeline.drop_frame else 'NON-DROP FRAME'}",
        "",
    ]
    record = 0
    for scene, first, end in timeline.spans(result.scenes):
        length = end - first
        times = [first, end, record, record + length]
        tcs = " ".join(timeline.timecode(t) for t in times)
        lines.append(f"{scene.index + 1:03d}  AX       V     C        {tcs}")
        # Editors relink the AX reel through the source clip's name.
        lines.append(f"* FROM CLIP NAME: {video.path.name}")
        lines.append("")
        record += length
    return "\n".join(lines)


# --- OpenTimelineIO --------------------------------------------------------------------------


def to_otio(result: SegmentResult) -> str:
    """OpenTimelineIO JSON: a video track (and an audio track) with one clip per scene; media
    and timeline times start at the video's start timecode."""
    import opentimelineio as otio

    video = result.video
    timeline = Timeline.of(video)
    rate = float(timeline.rate)
    url = _file_url(video)

    def frames(value: int):
        return otio.opentime.RationalTime(value, rate)

    def clip(scene: Scene, first: int, end: int):
        media = otio.schema.ExternalReference(
            target_url=url,
            available_range=otio.opentime.TimeRange(
                frames(timeline.start), frames(timeline.length)
            ),
        )
        return otio.schema.Clip(
            name=scene_name(scene, len(result.scenes)),
            media_reference=media,
            source_range=otio.opentime.TimeRange(
                frames(timeline.start + first), frames(end - first)
            ),
            metadata={
                "scenecut": {
                    "scene": scene.index,
                    "first_shot": scene.first_shot,
                    "last_shot": scene.last_shot,
                    "start_frame": scene.start,
                    "end_frame": scene.end,
                    "score": None if scene.score is None else round(scene.score, 4),
                }
            },
        )

    spans = timeline.spans(result.scenes)
    otio_timeline = otio.schema.Timeline(
        name=video.path.stem, global_start_time=frames(timeline.start)
    )
    kinds = [("Video 1", otio.schema.TrackKind.Video)]
    if video.has_audio:
        kinds.append(("Audio 1", otio.schema.TrackKind.Audio))
    for name, kind in kinds:
        track = otio.schema.Track(name=name, kind=kind)
        track.extend(clip(*span) for span in spans)
        otio_timeline.tracks.append(track)
    return otio.adapters.write_to_string(otio_timeline, "otio_json") + "\n"


# --- FCPXML ----------------------------------------------------------------------------------


def to_fcpxml(result: SegmentResult) -> str:
    """FCPXML 1.9: one asset for the video and one asset-clip per scene on the spine. The
    asset's ``start`` and the sequence's ``tcStart`` are the start timecode; spine offsets are
    sequence times, so they count from ``tcStart``."""
    video = result.video
    timeline = Timeline.of(video)
    rate = timeline.rate
    root = ET.Element("fcpxml", version="1.9")
    resources = _add(root, "resources")
    _add(
        resources,
        "format",
        id="r1",
        frameDuration=rational_seconds(1, rate),
        width=str(video.width),
        height=str(video.height),
    )
    asset = _add(
        resources,
        "asset",
        id="r2",
        name=video.path.stem,
        start=timeline.seconds(0),
        duration=rational_seconds(timeline.length, rate),
        hasVideo="1",
        hasAudio="1" if video.has_audio else "0",
        format="r1",
    )
    # FCPXML 1.9 moved the asset's src attribute into <media-rep>.
    _add(asset, "media-rep", kind="original-media", src=_file_url(video))
    event = _add(_add(root, "library"), "event", name=video.path.stem)
    project = _add(event, "project", name=video.path.stem)
    spans = timeline.spans(result.scenes)
    sequence = _add(
        project,
        "sequence",
        format="r1",
        duration=rational_seconds(sum(end - first for _, first, end in spans), rate),
        tcStart=timeline.seconds(0),
        tcFormat="DF" if timeline.drop_frame else "NDF",
    )
    spine = _add(sequence, "spine")
    record = 0
    for scene, first, end in spans:
        _add(
            spine,
            "asset-clip",
            ref="r2",
            name=scene_name(scene, len(result.scenes)),
            offset=timeline.seconds(record),
            start=timeline.seconds(first),
            duration=rational_seconds(end - first, rate),
        )
        record += end - first
    return _xml(root, "fcpxml")


# --- FCP7 XML (xmeml), as Premiere Pro imports it ----------------------------------------------


def _rate(parent: ET.Element, rate: Fraction) -> None:
    element = _add(parent, "rate")
    _add(element, "timebase", round(rate))
    _add(element, "ntsc", "TRUE" if rate.denominator == 1001 else "FALSE")


def _fcp7_timecode(parent: ET.Element, timeline: Timeline) -> None:
    element = _add(parent, "timecode")
    _rate(element, timeline.rate)
    _add(element, "string", timeline.timecode(0))
    _add(element, "frame", timeline.start)
    _add(element, "displayformat", "DF" if timeline.drop_frame else "NDF")


def _fcp7_file(timeline: Timeline) -> ET.Element:
    video = timeline.video
    element = ET.Element("file", id="file-1")
    _add(element, "name", video.path.name)
    _add(element, "pathurl", _file_url(video))
    _rate(element, timeline.rate)
    _add(element, "duration", timeline.length)
    _fcp7_timecode(element, timeline)
    media = _add(element, "media")
    _samples(_add(media, "video"), timeline)
    if video.has_audio:
        _add(media, "audio")
    return element


def _samples(parent: ET.Element, timeline: Timeline) -> None:
    samples = _add(parent, "samplecharacteristics")
    _rate(samples, timeline.rate)
    _add(samples, "width", timeline.video.width)
    _add(samples, "height", timeline.video.height)
    _add(samples, "pixelaspectratio", "square")


def to_fcp7(result: SegmentResult) -> str:
    """FCP7 XML (xmeml 4, what Premiere Pro exports and imports): a sequence with one clipitem
    per scene on a video track (and linked ones on an audio track). ``in``/``out`` are frames
    from the file's first frame, out exclusive; the file's ``timecode`` is the start timecode,
    and so is the sequence's."""
    video = result.video
    timeline = Timeline.of(video)
    spans = timeline.spans(result.scenes)
    kinds = ["video", "audio"] if video.has_audio else ["video"]
    root = ET.Element("xmeml", version="4")
    sequence = _add(root, "sequence", id="sequence-1")
    _add(sequence, "name", video.path.stem)
    _add(sequence, "duration", sum(end - first for _, first, end in spans))
    _rate(sequence, timeline.rate)
    _fcp7_timecode(sequence, timeline)
    media = _add(sequence, "media")
    for kind in kinds:
        section = _add(media, kind)
        if kind == "video":
            _samples(_add(section, "format"), timeline)
        track = _add(section, "track")
        record = 0
        for number, (scene, first, end) in enumerate(spans, 1):
            item = _add(track, "clipitem", id=f"clipitem-{kind}-{number}")
            _add(item, "masterclipid", "masterclip-1")
            _add(item, "name", scene_name(scene, len(spans)))
            _add(item, "enabled", "TRUE")
            _add(item, "duration", timeline.length)
            _rate(item, timeline.rate)
            _add(item, "start", record)
            _add(item, "end", record + end - first)
            _add(item, "in", first)
            _add(item, "out", end)
            # The file is described once, then referred to by its id.
            described = kind == "video" and number == 1
            item.append(_fcp7_file(timeline) if described else ET.Element("file", id="file-1"))
            if kind == "audio":
                source = _add(item, "sourcetrack")
                _add(source, "mediatype", "audio")
                _add(source, "trackindex", 1)
            if video.has_audio:  # picture and sound of a scene move together
                for linked in kinds:
                    link = _add(item, "link")
                    _add(link, "linkclipref", f"clipitem-{linked}-{number}")
                    _add(link, "mediatype", linked)
                    _add(link, "trackindex", 1)
                    _add(link, "clipindex", number)
            record += end - first
    return _xml(root, "xmeml")


# --- MLT (Shotcut, Kdenlive, melt) -----------------------------------------------------------


def _in_out(first: int, end: int) -> dict[str, str]:
    """MLT's ``in`` and ``out`` attributes: the first and the last frame, both included."""
    return {"in": str(first), "out": str(end - 1)}


def to_mlt(result: SegmentResult) -> str:
    """MLT XML: a profile of the video's size and timeline rate, the video as one avformat
    producer, and a playlist of one entry per scene (``in``/``out`` inclusive frames from the
    file's start: MLT seeks by time, so no timecode applies)."""
    video = result.video
    timeline = Timeline.of(video)
    rate = timeline.rate
    spans = timeline.spans(result.scenes)
    root = ET.Element("mlt", LC_NUMERIC="C", title=video.path.stem)
    shape = gcd(video.width, video.height) or 1
    _add(
        root,
        "profile",
        description=f"{video.width}x{video.height} {float(rate):.6g} fps",
        width=str(video.width),
        height=str(video.height),
        progressive="1",
        sample_aspect_num="1",
        sample_aspect_den="1",
        display_aspect_num=str(video.width // shape),
        display_aspect_den=str(video.height // shape),
        frame_rate_num=str(rate.numerator),
        frame_rate_den=str(rate.denominator),
    )
    producer = _add(root, "producer", id="producer0", **_in_out(0, timeline.length))
    _add(producer, "property", timeline.length, name="length")
    _add(producer, "property", str(video.path.absolute()), name="resource")
    _add(producer, "property", "avformat", name="mlt_service")
    playlist = _add(root, "playlist", id="playlist0")
    for scene, first, end in spans:
        entry = _add(playlist, "entry", producer="producer0", **_in_out(first, end))
        _add(entry, "property", scene_name(scene, len(spans)), name="scenecut:scene")
    tractor = _add(root, "tractor", id="tractor0")
    _add(tractor, "track", producer="playlist0")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'
