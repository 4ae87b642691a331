"""Reliability campaign (issue 14): hostile inputs, interrupts and option values against scenecut.

    python bench/fuzz.py [--scale 1.0 | --runs N] [--seed 14] [--timeout 60] [--workers N]
                         [--source DIR] [--only corrupt,odd,...] [--json OUT] [--keep]

Every run is one ``scenecut`` process (``python -m scenecut``, from ``--source DIR`` through
PYTHONPATH when given) in its own folder and session, with a wall-clock limit. Each run records
its exit code, whether stderr holds a traceback, its stderr lines, whether it hung, and what it
left: the complete output set (JSON, CSV, one clip per scene the JSON lists) or none of it, no
hidden or temporary files, no processes still running in its session; for corrupt media whether
frames were lost (PyAV decodes the file independently) and, if so, whether stderr said so in a
``warning:`` line that mentions frames; for re-encoded clips of valid inputs, frame accuracy.
One table on stdout, one row per category. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.server
import json
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzzcases  # noqa: E402
from fuzzcases import Stderr, output_set, temp_files  # noqa: E402

CATEGORIES = {
    "corrupt": "corrupted files",
    "odd": "odd but valid inputs and paths",
    "interrupt": "interrupts",
    "concurrency": "concurrency",
    "disk": "full disk",
    "weights": "hostile weight files",
    "download": "misbehaving download server",
    "options": "bad option values",
}
FLAGS = (
    "exit 3",
    "traceback",
    "hang",
    "partial set",
    "temp left",
    "silent frame loss",
    "other failure",
)
CONTAINERS = ("mp4", "mp4-faststart", "mkv", "webm", "ts", "mov")
SEGMENT = ["--model", "classic", "-q"]  # every segment run: the fast offline model, no table

# Runs a command under resource limits. An exec shim rather than Popen's preexec_fn, which is
# not safe in a threaded parent. SIGXFSZ is ignored, so a write past RLIMIT_FSIZE fails with
# EFBIG instead of killing the process (children that reset it are killed, as on a real system).
SHIM = (
    "import json, os, resource, signal, sys\n"
    "for name, value in json.loads(sys.argv[1]).items():\n"
    "    resource.setrlimit(getattr(resource, name), (value, value))\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

# `scenecut weights pull` against the loopback server: scenecut has no URL override
# (scenecut/models/download.py reads none), so this entry point points every registered URL at
# $FUZZ_WEIGHTS_BASE/<file name> (keeping the file name, hence its hash prefix) and runs the CLI.
LAUNCHER = (
    "import dataclasses, os, sys\n"
    "try:\n"
    "    from scenecut.models import hub\n"
    "    for name, record in list(hub.REGISTRY.items()):\n"
    "        if record.url:\n"
    "            url = os.environ['FUZZ_WEIGHTS_BASE'] + '/' + record.filename\n"
    "            hub.REGISTRY[name] = dataclasses.replace(record, urls=(url,))\n"
    "except Exception as exc:\n"
    "    print(f'fuzz-launcher: cannot redirect the registry: {exc!r}', file=sys.stderr)\n"
    "    sys.exit(99)\n"
    "sys.argv[0] = 'scenecut'\n"
    "from scenecut.cli import main\n"
    "main()\n"
)


# --------------------------------------------------------------------------------------------
# Processes


def session_members(sid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes of session ``sid``: (pid, command name)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry), stat[stat.find("(") + 1 : stat.rfind(")")]))
    return found


class Proc:
    """One scenecut process in its own session, stdout/stderr to files, reaped with wait4."""

    def __init__(self, argv: list[str], cwd: Path, env: dict, tag: str = "", limits=None):
        self.argv = argv
        if limits:
            argv = [sys.executable, "-c", SHIM, json.dumps(limits), *argv]
        self.out_path, self.err_path = cwd / f"{tag}stdout.txt", cwd / f"{tag}stderr.txt"
        # Pipes copied to files by this process: files opened for the child would fall under
        # its RLIMIT_FSIZE, and a full "disk" would swallow its error message.
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.copiers = [
            threading.Thread(target=_copy, args=(pipe, path), daemon=True)
            for pipe, path in (
                (self.popen.stdout, self.out_path),
                (self.popen.stderr, self.err_path),
            )
        ]
        for thread in self.copiers:
            thread.start()
        self.pid = self.popen.pid
        self.start = time.monotonic()
        self.code: int | None = None
        self.seconds = 0.0
        self.maxrss_mb = 0.0
        self.hang = False
        self.orphans: list[str] = []

    def poll(self) -> bool:
        if self.code is not None:
            return True
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.code
        self.seconds = time.monotonic() - self.start
        self.maxrss_mb = usage.ru_maxrss / 1024
        for thread in self.copiers:  # a child that outlives it may hold the pipe open
            thread.join(timeout=2)
        return True

    def wait(self, timeout: float) -> bool:
        """Wait until the process ends or ``timeout`` seconds from its start; False if it hung
        (then it and its session are killed)."""
        while not self.poll():
            if time.monotonic() - self.start > timeout:
                self.hang = True
                self.kill_session()
                while not self.poll():
                    time.sleep(0.02)
                self.seconds = timeout
                return False
            time.sleep(0.02)
        return True

    def kill_session(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid, _ in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def reap_orphans(self, grace: float = 0.5) -> list[str]:
        """Processes of the session still running ``grace`` s after the main one ended; killed."""
        deadline = time.monotonic() + grace
        members = session_members(self.pid)
        while members and time.monotonic() < deadline:
            time.sleep(0.05)
            members = session_members(self.pid)
        self.orphans = [name for _, name in members]
        if members:
            self.kill_session()
        return self.orphans

    @property
    def stderr(self) -> Stderr:
        for thread in self.copiers:
            thread.join(timeout=2)
        return Stderr(self.err_path.read_bytes().decode("utf-8", "replace"))

    @property
    def stdout(self) -> str:
        return self.out_path.read_bytes().decode("utf-8", "replace")


def _copy(pipe, path: Path) -> None:
    with pipe, open(path, "ab") as out:
        while chunk := pipe.read1(65536):
            out.write(chunk)
            out.flush()


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Run:
    category: str
    case: str
    argv: list[str] = field(default_factory=list)
    exit: int | None = None
    seconds: float = 0.0
    hang: bool = False
    traceback: bool = False
    stderr_lines: int = 0
    error_lines: int = 0
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what each "other failure" was
    facts: dict = field(default_factory=dict)
    stderr_tail: str = ""

    def flag(self, name: str, note: str = "") -> None:
        assert name in FLAGS, name
        if name not in self.flags:
            self.flags.append(name)
        if note:
            self.notes.append(note)

    @property
    def ok(self) -> bool:
        return not self.flags


def judge(run: Run, proc: Proc, first: bool = True) -> Stderr:
    """The checks every process gets: exit 3, traceback, hang, processes left running, and a
    failure that says nothing. ``first``: this process's numbers are the run's."""
    err = proc.stderr
    if first:
        run.argv, run.exit, run.seconds = proc.argv, proc.code, proc.seconds
        run.stderr_lines, run.error_lines = len(err.lines), len(err.errors)
        run.stderr_tail = err.text[-1500:]
    run.hang |= proc.hang
    run.traceback |= err.traceback
    if proc.hang:
        run.flag("hang")
    if proc.code == 3:
        run.flag("exit 3")
        run.facts.setdefault("bug_lines", []).extend(err.errors[:2])
    if err.traceback:
        run.flag("traceback")
    if proc.orphans:
        run.flag("other failure", f"processes left running: {', '.join(sorted(set(proc.orphans)))}")
    if "fuzz-launcher:" in err.text:
        run.flag("other failure", "harness: the launcher could not redirect the registry")
    elif proc.code is not None and 0 < proc.code < 128 and not proc.hang and not err.errors:
        run.flag("other failure", f"exit {proc.code} without an error: line")
    return err


def check_set(
    run: Run, proc: Proc, out: Path, stem: str, clip_ext: str | None
) -> fuzzcases.OutputSet:
    """Complete output set when the exit is 0, none otherwise; no temporary files."""
    found = output_set(out, stem, clip_ext)
    run.facts["set"] = found.state
    if found.json_error:
        run.flag("other failure", "the JSON written is not valid JSON")
    if proc.code == 0 and found.state != "complete":
        if found.state == "none":
            run.flag("other failure", "exit 0 but no outputs")
        else:
            run.flag("partial set")
            run.facts["missing"] = found.missing[:5]
    elif proc.code != 0 and found.state != "none":
        run.flag("partial set")
        run.facts["left"] = found.present[:5]
    temps = temp_files(out)
    if temps:
        run.flag("temp left")
        run.facts["temps"] = temps[:5]
    return found


# --------------------------------------------------------------------------------------------
# The campaign's context: interpreter, environment, inputs


@dataclass
class Case:
    category: str
    name: str
    fn: Callable[[Context, Run, Path], None]
    weight: float = 1.0  # rough relative duration, to start long cases first


class Context:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.src = work / "src"
        self.src.mkdir(parents=True, exist_ok=True)
        self.timeout = args.timeout
        self.seed = args.seed
        self.python = args.python
        self.sources: dict[str, tuple[Path, int]] = {}  # container -> (file, decodable frames)
        self.odd: dict[str, Path] = {}
        self.calibration = 4.0
        self.server_base = ""
        self.tree = self.feats = self.truth = None
        self.weights: dict[str, Path] = {}

    def env(self, run_dir: Path, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("SCENECUT_DEBUG", "PYTHONPATH")}
        env.update(
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            COLUMNS="120",
            PYTHONDONTWRITEBYTECODE="1",
            SCENECUT_HOME=str(run_dir / "home"),
        )
        if self.args.source:
            env["PYTHONPATH"] = str(self.args.source)
        env.update(extra)
        return env

    def scenecut(self, *args: str) -> list[str]:
        return [self.python, "-m", "scenecut", *args]

    def start(self, run_dir: Path, args: list[str], tag: str = "", limits=None, **env) -> Proc:
        return Proc(self.scenecut(*args), run_dir, self.env(run_dir, **env), tag, limits)

    def run(self, run_dir: Path, args: list[str], tag: str = "", limits=None, **env) -> Proc:
        proc = self.start(run_dir, args, tag, limits, **env)
        proc.wait(self.timeout)
        proc.reap_orphans()
        return proc

    def decodable(self, path: Path) -> int:
        """PyAV's count of decodable frames, in a separate process (a decoder crash on a hostile
        file must not take the campaign with it)."""
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import fuzzcases; "
        code += "print(fuzzcases.decodable_frames(sys.argv[1]))"
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, str(path)],
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            return int(proc.stdout.strip() or 0)
        except (subprocess.TimeoutExpired, ValueError):
            return 0


def ffmpeg(*args: str) -> None:
    from scenecut.video import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)}: {proc.stderr.strip()[-400:]}")


FILM = dict(n_scenes=4, shots_per_scene=(1, 2), shot_frames=(16, 26), width=160, height=96)


def make_sources(ctx: Context) -> None:
    """The clean clip in each container (the same pictures), with its decodable frame count."""
    from scenecut.data.synth import make_film

    s = ctx.src
    spec = dict(FILM, seed=ctx.seed, audio=True, threads=1)
    for ext in ("mp4", "mkv", "mov", "ts"):
        make_film(s / f"base.{ext}", **spec)
    ffmpeg("-i", str(s / "base.mp4"), "-c", "copy", "-movflags", "+faststart", str(s / "fs.mp4"))
    ffmpeg(
        *("-i", str(s / "base.mp4"), "-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline"),
        *("realtime", "-cpu-used", "8", "-threads", "1", "-c:a", "libopus", str(s / "base.webm")),
    )
    files = {
        "mp4": "base.mp4",
        "mp4-faststart": "fs.mp4",
        "mkv": "base.mkv",
        "webm": "base.webm",
        "ts": "base.ts",
        "mov": "base.mov",
    }
    for container, name in files.items():
        ctx.sources[container] = (s / name, ctx.decodable(s / name))


def make_odd_inputs(ctx: Context) -> None:
    """Valid but unusual inputs, all from the base clip (or the generator)."""
    from fractions import Fraction

    from scenecut.data.synth import make_film

    s, base = ctx.src / "odd", str(ctx.src / "base.mp4")
    s.mkdir(exist_ok=True)
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-threads", "1"]
    made = {}

    def add(key: str, name: str, *args: str) -> None:
        ffmpeg("-i", base, *args, str(s / name))
        made[key] = s / name

    for w, h in ((640, 266), (482, 202), (250, 142)):
        add(f"size {w}x{h}", f"s{w}x{h}.mp4", "-vf", f"scale={w}:{h}", *x264, "-c:a", "copy")
    add("size 481x203 (4:4:4)", "s481.mp4", "-vf", "scale=481:203", *x264, "-pix_fmt", "yuv444p")
    add("gif", "anim.gif", "-an")
    add("gif 161x97", "anim161.gif", "-vf", "scale=161:97", "-an")
    add("apng", "anim.png", "-an", "-f", "apng", "-plays", "0")
    add("apng 161x97", "anim161.png", "-vf", "scale=161:97", "-an", "-f", "apng")
    vfr = "setpts='if(lt(N,30),N,30+(N-30)*2)/25/TB'"
    add("vfr mp4", "vfr.mp4", "-vf", vfr, "-fps_mode", "passthrough", *x264, "-an")
    add("vfr mkv", "vfr.mkv", "-vf", vfr, "-fps_mode", "passthrough", *x264, "-an")
    for angle in (90, 180, 270):
        ffmpeg("-display_rotation", str(angle), "-i", base, "-c", "copy", str(s / f"r{angle}.mp4"))
        made[f"rotated {angle}"] = s / f"r{angle}.mp4"
    add("mpeg-ts", "film.ts", "-c", "copy", "-f", "mpegts")
    add("raw dv", "film.dv", "-vf", "scale=720:576", "-r", "25", "-c:v", "dvvideo", "-an")
    add("mkv", "film.mkv", "-c", "copy")
    add("mov", "film.mov", "-c", "copy")
    add(
        "webm vp9",
        "film.webm",
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-threads",
        "1",
        "-c:a",
        "libopus",
    )
    add("avi mpeg4", "film.avi", "-c:v", "mpeg4", "-q:v", "4", "-c:a", "mp2")
    add(
        "hevc",
        "hevc.mp4",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error:pools=none:frame-threads=1",
        "-tag:v",
        "hvc1",
        "-c:a",
        "copy",
    )
    add("no audio", "silent.mp4", "-c", "copy", "-an")
    add("one frame", "one.mp4", "-frames:v", "1", *x264, "-an")
    make_film(s / "ntsc.mp4", **dict(FILM, seed=ctx.seed, fps=Fraction(30000, 1001), threads=1))
    made["29.97 fps"] = s / "ntsc.mp4"
    ctx.odd = made


ODD_NAMES = {  # the base clip under names that break naive tools; the value is the file name
    "colon": "take2:final.mp4",
    "240-char name": "a" * 236 + ".mp4",
    "spaces": "my film (final cut).mp4",
    "unicode": "película 日本語 🎬.mp4",
    "newline": "line\nbreak.mp4",
    "leading dash": "-clip.mp4",
    "rich markup": "[bold]clip[/bold].mp4",
    "percent": "clip%03d.mp4",
    "dollar macro": "$VIDEO_NAME.mp4",
    "protocol-like": "http:clip.mp4",
    "upper-case suffix": "CLIP.MP4",
    "no suffix": "clip",
    "dots": "my.film.v2.mp4",
    "folder with spaces": "dir with space/clip.mp4",
}


# --------------------------------------------------------------------------------------------
# Categories


def segment_case(
    ctx: Context,
    run: Run,
    d: Path,
    name: str,
    *,
    extra: tuple[str, ...] = (),
    clip_ext: str | None = ".mp4",
    source_frames: int | None = None,
    accuracy: bool = False,
    limits=None,
) -> None:
    """``segment NAME --save-clips -f json,csv`` in ``d`` and the checks of its outputs."""
    clips = ["--save-clips"] if clip_ext else []
    args = ["segment", *clips, *extra, "-f", "json,csv", *SEGMENT, "-o", "out", "--", name]
    proc = ctx.run(d, args, limits=limits)
    err = judge(run, proc)
    found = check_set(run, proc, d / "out", Path(name).stem, clip_ext)
    doc = found.doc
    tool_frames = doc["video"].get("frame_count") if doc else None
    run.facts["tool_frames"] = tool_frames
    if source_frames is not None:
        decodable = ctx.decodable(d / name)
        run.facts["decodable"], run.facts["source_frames"] = decodable, source_frames
        lost = decodable < source_frames or (
            tool_frames is not None and tool_frames < source_frames
        )
        run.facts["frames_lost"] = lost
        if lost and proc.code == 0:
            run.facts["warned_frame"] = err.frame_warning
            if not err.frames_warning:
                run.flag("silent frame loss")
    if accuracy and proc.code == 0 and found.state == "complete" and doc:
        problems = fuzzcases.clip_problems(d / name, doc, found.clips)
        run.facts["clip_problems"] = problems[:5]
        if problems and run.category == "odd":
            run.flag("other failure", f"clips not frame accurate ({problems[0]})")
    if run.category == "odd":
        if proc.code != 0:
            line = (err.errors or err.lines or ["no message"])[0]
            run.flag("other failure", f"valid input refused: {line[:160]}")
        decodable = ctx.decodable(d / name)
        run.facts["decodable"] = decodable
        if tool_frames is not None and tool_frames < decodable and not err.frames_warning:
            run.flag("silent frame loss")


def corrupt_cases(ctx: Context, scale: float) -> list[Case]:
    per = max(1, round(25 * scale))
    cases = []
    for n, container in enumerate(CONTAINERS):
        specs = fuzzcases.corruptions(ctx.seed * 100 + n)
        extra = 0
        while len(specs) < per:  # a larger campaign: more draws of the same mix
            extra += 1
            specs += fuzzcases.corruptions(ctx.seed * 100 + n + 1000 * extra)
        specs = _take(specs, per, random.Random(f"{ctx.seed}/{container}"))
        for spec in specs:
            cases.append(Case("corrupt", f"{container} {spec.name}", _corrupt(container, spec)))
    return cases


def _corrupt(container: str, spec: fuzzcases.Corruption):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        source, frames = ctx.sources[container]
        name = "clip" + source.suffix
        (d / name).write_bytes(spec.apply(source.read_bytes()))
        segment_case(ctx, run, d, name, source_frames=frames, accuracy=True)

    return fn


def odd_cases(ctx: Context, scale: float) -> list[Case]:
    cases = []
    for key in [*ctx.odd, *ODD_NAMES]:
        for copy in (False, True):
            mode = "copy" if copy else "re-encode"
            cases.append(Case("odd", f"{key} ({mode})", _odd(key, copy)))
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed))


def _odd(key: str, copy: bool):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        if key in ctx.odd:
            source = ctx.odd[key]
            name = "video" + source.suffix
        else:
            source, name = ctx.src / "base.mp4", ODD_NAMES[key]
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, d / name)
        ext = (
            ({".png": ".apng"}.get(Path(name).suffix, Path(name).suffix) or ".mkv")
            if copy
            else ".mp4"
        )
        extra = ("--copy",) if copy else ()
        segment_case(ctx, run, d, name, extra=extra, clip_ext=ext, accuracy=not copy)

    return fn


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def interrupt_cases(ctx: Context, scale: float) -> list[Case]:
    rng = random.Random(ctx.seed + 1)
    per = max(1, round(10 * scale))
    cases = []
    for sig in SIGNALS:
        for i in range(per):
            fraction = round((i + rng.random()) / per * 0.85 + 0.1, 3)  # of a plain run's time
            cases.append(
                Case("interrupt", f"{sig} at {fraction:.2f}", _interrupt(sig, fraction), 3)
            )
    return cases


def _interrupt(sig: str, fraction: float):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        shutil.copyfile(ctx.src / "long.mp4", d / "film.mp4")
        args = ["segment", "film.mp4", "--save-clips", "-f", "json,csv", *SEGMENT, "-o", "out"]
        proc = ctx.start(d, args)
        delay = fraction * ctx.calibration
        while not proc.poll() and time.monotonic() - proc.start < delay:
            time.sleep(0.01)
        run.facts["signal_at_s"] = round(delay, 2)
        if proc.code is not None:
            run.facts["finished_before_signal"] = True
        else:
            # Ctrl-C reaches the whole foreground group; `kill` and the OOM killer the one pid.
            with contextlib.suppress(ProcessLookupError):
                if sig == "SIGINT":
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    os.kill(proc.pid, SIGNALS[sig])
        proc.wait(ctx.timeout)
        # After kill -9 nothing in scenecut can stop its children: they get time to finish.
        proc.reap_orphans(5.0 if sig == "SIGKILL" else 1.0)
        judge(run, proc)
        out = d / "out"
        left = temp_files(out)
        state = output_set(out, "film", ".mp4").state
        run.facts.update(temps_after_signal=left[:5], set_after_signal=state)
        if not run.facts.get("finished_before_signal"):
            if sig != "SIGKILL":  # kill -9 cannot clean up: judged by the rerun below
                if left:
                    run.flag("temp left")
                if state == "partial":
                    run.flag("partial set")
            if sig == "SIGINT" and proc.code != 130 and not proc.hang:
                run.flag("other failure", f"exit {proc.code} after Ctrl-C, not 130")
        # A plain rerun: it must succeed, or refuse to clobber a complete set left behind.
        rerun = ctx.run(d, args, tag="rerun-")
        judge(run, rerun, first=False)
        run.facts["rerun_exit"] = rerun.code
        if state == "complete":
            if rerun.code not in (0, 1):
                run.flag("other failure", f"a plain rerun over a complete set exited {rerun.code}")
        elif rerun.code != 0:
            line = (rerun.stderr.errors or ["no message"])[0]
            run.flag("other failure", f"a plain rerun failed: {line[:160]}")
        if output_set(out, "film", ".mp4").state != "complete":
            run.flag("partial set")
        new = [t for t in temp_files(out) if t not in left]
        if new:
            run.flag("temp left")
            run.facts["temps_after_rerun"] = new[:5]

    return fn


def concurrency_cases(ctx: Context, scale: float) -> list[Case]:
    variants = [
        ("same input", 0.0, False),
        ("same input", 0.3, False),
        ("same input", 1.0, False),
        ("same input", 2.0, False),
        ("same input, --overwrite", 0.0, True),
        ("same input, --overwrite", 0.5, True),
        ("same input, --overwrite", 1.5, True),
        ("two inputs", 0.0, False),
        ("two inputs", 0.5, False),
        ("two inputs", 1.5, False),
    ]
    cases = [
        Case("concurrency", f"{what}, second after {delay:.1f} s", _concurrent(what, delay, ow), 2)
        for what, delay, ow in variants
    ]
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed + 2))


def _concurrent(what: str, delay: float, overwrite: bool):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        names = ["film.mp4", "other.mp4" if what == "two inputs" else "film.mp4"]
        for name in set(names):
            shutil.copyfile(ctx.src / "base.mp4", d / name)
        flags = ["--overwrite"] if overwrite else []
        procs = []
        for i, name in enumerate(names):
            if i:
                time.sleep(delay)
            args = [
                "segment",
                name,
                "--save-clips",
                "-f",
                "json,csv",
                *SEGMENT,
                *flags,
                "-o",
                "out",
            ]
            procs.append(ctx.start(d, args, tag=f"p{i}-"))
        for p in procs:
            p.wait(ctx.timeout)
            p.reap_orphans()
        for i, p in enumerate(procs):
            judge(run, p, first=i == 0)
        codes = [p.code for p in procs]
        run.facts["exits"] = codes
        out = d / "out"
        for stem in sorted({Path(n).stem for n in names}):
            if output_set(out, stem, ".mp4").state != "complete":
                run.flag("partial set")
        if temp_files(out):
            run.flag("temp left")
            run.facts["temps"] = temp_files(out)[:5]
        if what == "same input" and not overwrite and codes == [0, 0]:
            run.flag(
                "other failure",
                "both runs exited 0: one replaced the other's outputs without --overwrite",
            )
        if what == "same input" and not overwrite and 0 not in codes:
            run.flag("other failure", "neither run succeeded")
        if (overwrite or what == "two inputs") and codes != [0, 0]:
            run.flag("other failure", f"exits {codes}: both runs should succeed")

    return fn


def disk_cases(ctx: Context, scale: float) -> list[Case]:
    limits = (0, 100, 1000, 3000, 6000, 12000, 25000, 60000)
    cases = [
        Case(
            "disk",
            f"RLIMIT_FSIZE {limit} B ({'copy' if copy else 're-encode'})",
            _disk(limit, copy),
        )
        for limit in limits
        for copy in (False, True)
    ]
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed + 3))


def _disk(limit: int, copy: bool):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        shutil.copyfile(ctx.src / "base.mp4", d / "film.mp4")
        extra = ("--copy",) if copy else ()
        segment_case(ctx, run, d, "film.mp4", extra=extra, limits={"RLIMIT_FSIZE": limit})

    return fn


HOSTILE_WEIGHTS = (
    "huge-dims.safetensors",
    "huge-dims-consistent.safetensors",
    "header-length-huge.safetensors",
    "header-garbage.safetensors",
    "bad-dtype.safetensors",
    "truncated.safetensors",
    "empty.safetensors",
    "folder.safetensors",
    "config-huge.safetensors",
    "config-at-limits.safetensors",
    "config-not-json.safetensors",
    "nan-weights.safetensors",
    "four-bytes.pt",
    "pickle-code.pt",
    "zip-pickle-code.pt",
    "lightning-wrong-keys.ckpt",
)


def make_weights(ctx: Context) -> None:
    """Hostile checkpoint files (those that carry code are made per run, with its marker)."""
    import torch

    from scenecut.models import bassl, checkpoints
    from scenecut.models.config import METADATA_KEY, CRNConfig, ModelConfig

    w = ctx.src / "weights"
    w.mkdir(exist_ok=True)
    tiny = ModelConfig(
        encoder="tiny",
        crn=CRNConfig(
            input_dim=16,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=8,
            intermediate_size=64,
        ),
        resize=64,
        image_size=56,
    )
    torch.manual_seed(ctx.seed)
    model = bassl.build(tiny)
    checkpoints.save(model, tiny, w / "valid.safetensors")
    data = (w / "valid.safetensors").read_bytes()
    (w / "truncated.safetensors").write_bytes(data[: len(data) * 6 // 10])
    meta = {METADATA_KEY: tiny.to_json()}

    def raw(name: str, header: dict, body: bytes = b"", length: int | None = None) -> None:
        text = json.dumps({"__metadata__": meta, **header}).encode()
        size = len(text) if length is None else length
        (w / name).write_bytes(struct.pack("<Q", size) + text + body)

    t = "crn.shot_embedding.shot_embedding.weight"
    raw(
        "huge-dims.safetensors",
        {t: {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 16]}},
        bytes(16),
    )
    raw(
        "huge-dims-consistent.safetensors",
        {t: {"dtype": "F32", "shape": [1 << 16, 1 << 16], "data_offsets": [0, 1 << 34]}},
        bytes(64),
    )
    raw("header-length-huge.safetensors", {}, b"", length=1 << 62)
    (w / "header-garbage.safetensors").write_bytes(
        struct.pack("<Q", 100) + random.Random(1).randbytes(100)
    )
    raw(
        "bad-dtype.safetensors",
        {t: {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}},
        bytes(8),
    )
    (w / "empty.safetensors").write_bytes(b"")
    (w / "folder.safetensors").mkdir(exist_ok=True)
    small = {t: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    huge = json.loads(tiny.to_json())
    huge["crn"].update(hidden_size=10**6, intermediate_size=10**7, num_hidden_layers=10**4)
    meta = {METADATA_KEY: json.dumps(huge)}
    raw("config-huge.safetensors", small, bytes(8))
    limits = json.loads(tiny.to_json())
    limits["crn"].update(
        input_dim=4096,
        hidden_size=4096,
        num_hidden_layers=48,
        intermediate_size=16384,
        neighbor_size=256,
        num_attention_heads=256,
    )
    meta = {METADATA_KEY: json.dumps(limits)}
    raw("config-at-limits.safetensors", small, bytes(8))
    meta = {METADATA_KEY: "{not json"}
    raw("config-not-json.safetensors", small, bytes(8))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    checkpoints.save(model, tiny, w / "nan-weights.safetensors")
    (w / "four-bytes.pt").write_bytes(b"\x80\x02}q")
    torch.save({"state_dict": {"x": torch.zeros(3)}, "epoch": 1}, w / "lightning-wrong-keys.ckpt")
    torch.save({"x": torch.zeros(1)}, w / "zip-template.pt")
    ctx.weights = {name: w / name for name in HOSTILE_WEIGHTS}


def _code_pickle(marker: Path) -> bytes:
    """A protocol-2 pickle whose loading runs ``os.system('touch MARKER')``."""
    return b"\x80\x02cos\nsystem\nq\x00X" + _pstr(f"touch '{marker}'") + b"q\x01\x85q\x02Rq\x03."


def _pstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<I", len(raw)) + raw


def _zip_with_pickle(template: Path, payload: bytes, dest: Path) -> None:
    import zipfile

    with zipfile.ZipFile(template) as src, zipfile.ZipFile(dest, "w") as out:
        for item in src.infolist():
            data = payload if item.filename.endswith("data.pkl") else src.read(item)
            out.writestr(item, data)


def weights_cases(ctx: Context, scale: float) -> list[Case]:
    cases = [
        Case("weights", f"{how}: {name}", _weights(name, how), 2)
        for name in HOSTILE_WEIGHTS
        for how in ("segment --model", "weights import")
    ]
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed + 4))


def _weights(name: str, how: str):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        marker = d / "code-ran"
        if name == "pickle-code.pt":
            path = d / name
            path.write_bytes(_code_pickle(marker))
        elif name == "zip-pickle-code.pt":
            path = d / name
            _zip_with_pickle(ctx.src / "weights" / "zip-template.pt", _code_pickle(marker), path)
        else:
            path = ctx.weights[name]
        shutil.copyfile(ctx.src / "base.mp4", d / "film.mp4")
        if how == "segment --model":
            args = ["segment", "film.mp4", "--model", str(path), "-f", "json", "-q", "-o", "out"]
        else:
            args = ["weights", "import", str(path), "--as", "hostile"]
        # An address-space cap: a file that makes scenecut allocate tens of GB fails here
        # instead of taking the machine down (the peak resident size is reported either way).
        proc = ctx.run(d, args, limits={"RLIMIT_AS": 8 << 30})
        judge(run, proc)
        run.facts["peak_rss_mb"] = round(proc.maxrss_mb)
        if marker.exists():
            run.flag("other failure", "the file's code ran")
        if proc.maxrss_mb > 2048:
            run.flag("other failure", f"peak resident memory {proc.maxrss_mb:.0f} MB")
        if how == "segment --model":
            if proc.code != 0:
                check_set(run, proc, d / "out", "film", None)
            else:
                doc_path = d / "out" / "film.scenes.json"
                try:
                    doc = json.loads(doc_path.read_text(), parse_constant=fuzzcases._no_constant)
                    bad = [s for s in doc["boundary_scores"] if not 0 <= s <= 1]
                except (OSError, ValueError, KeyError) as exc:
                    bad = [str(exc)]
                run.flag("other failure", "accepted the file" + (" and wrote NaN" if bad else ""))
        else:
            made = d / "home" / "weights" / "imported" / "hostile.safetensors"
            if proc.code == 0 or made.exists():
                run.flag("other failure", "imported the file")
            left = temp_files(d / "home")
            if left:
                run.flag("temp left")
                run.facts["temps"] = left[:5]
        if proc.code not in (1, 2) and not proc.hang and proc.code not in (0, 3):
            run.flag("other failure", f"exit {proc.code}")

    return fn


SERVER_MODES = (
    "html",
    "short",
    "stall-headers",
    "stall-body",
    "drip",
    "404",
    "500",
    "redirect-loop",
    "huge-length",
    "wrong-bytes",
    "empty",
)
PULLED = ("resnet50-imagenet-v1", "bassl")  # with a hash prefix; with no hash at all


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves ``/<mode>/<file>`` badly, as ``mode`` says."""

    protocol_version = "HTTP/1.1"
    stop = threading.Event()

    def log_message(self, *args) -> None:
        pass

    def headers_only(self, status: int, length: int, kind="application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self) -> None:
        mode = self.path.strip("/").split("/")[0]
        try:
            self.serve(mode)
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def serve(self, mode: str) -> None:
        page = b"<!DOCTYPE html><html><body><h1>Sign in to download</h1></body></html>\n"
        if mode == "html":
            self.headers_only(200, len(page), "text/html; charset=utf-8")
            self.wfile.write(page)
        elif mode in ("short", "huge-length"):
            self.headers_only(200, 100_000 if mode == "short" else 10**15)
            self.wfile.write(random.Random(2).randbytes(1000))
        elif mode == "stall-headers":
            self.stop.wait(900)
        elif mode == "stall-body":
            self.headers_only(200, 100_000)
            self.wfile.write(bytes(1000))
            self.wfile.flush()
            self.stop.wait(900)
        elif mode == "drip":  # one byte every 2 s: no read ever times out
            self.headers_only(200, 100_000)
            while not self.stop.wait(2):
                self.wfile.write(b"\0")
                self.wfile.flush()
        elif mode in ("404", "500"):
            self.send_error(int(mode))
        elif mode == "redirect-loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "wrong-bytes":
            body = random.Random(3).randbytes(5000)
            self.headers_only(200, len(body))
            self.wfile.write(body)
        elif mode == "empty":
            self.headers_only(200, 0)
        else:
            self.send_error(400)


def start_server(ctx: Context) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctx.server_base = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def download_cases(ctx: Context, scale: float) -> list[Case]:
    slow = ("stall-headers", "stall-body", "drip")
    cases = [
        Case("download", f"{mode}: {name}", _download(mode, name), 20 if mode in slow else 1)
        for mode in SERVER_MODES
        for name in PULLED
    ]
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed + 5))


def _download(mode: str, name: str):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        base = f"{ctx.server_base}/{mode}"
        argv = [ctx.python, "-c", LAUNCHER, "weights", "pull", name, "-q"]
        proc = Proc(argv, d, ctx.env(d, FUZZ_WEIGHTS_BASE=base))
        proc.wait(ctx.args.download_timeout)
        proc.reap_orphans()
        judge(run, proc)
        if proc.code == 0:
            run.flag("other failure", "accepted a bad download")
        folder = d / "home" / "weights"
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        run.facts["weights_files"] = [p.name for p in files]
        # A kept .part (and the .part.url naming the URL it resumes from) is not installed.
        installed = [p.name for p in files if not p.name.endswith((".part", ".part.url"))]
        installed = [n for n in installed if not n.startswith(".")]
        if installed:
            run.flag("other failure", f"a bad file was installed ({installed[0]})")

    return fn


FLOAT, INT = "float", "int"
HUGE_INT, HUGE_FLOAT = "99999999999999999999", "1e308"
# (option, type, least valid value or None, greatest or None, huge values safe to try)
OPTIONS = {
    "segment": [
        ("--detector-threshold", FLOAT, 0, None, True),
        ("--min-shot-len", FLOAT, 0, None, True),
        ("--batch-size", INT, 0, None, True),
        ("--threshold", FLOAT, None, None, True),
        ("--scenes", INT, 1, None, True),
        ("--min-scene-len", FLOAT, 0, None, True),
        ("--save-images", INT, 0, None, True),
    ],
    "eval": [
        ("--tolerance", FLOAT, 0, None, True),
        ("--batch-size", INT, 0, None, True),
        ("--threshold", FLOAT, None, None, True),
    ],
    "data check": [("--workers", INT, 0, None, False)],
    "data ingest": [
        ("--detector-threshold", FLOAT, 0, None, True),
        ("--min-shot-len", FLOAT, 0, None, True),
    ],
    "data synth": [
        ("--movies", INT, 1, None, False),  # huge: hours of real work, not a bug
        ("--shots-per-movie", INT, 1, None, False),
        ("--seed", INT, 0, None, True),
        ("--revisit", FLOAT, 0, 1, True),
        ("--grading", FLOAT, 0, 1, True),
        ("--fps", INT, 1, None, True),
        ("--workers", INT, 0, None, False),  # huge: a process per worker
    ],
    "data puzzles": [("--workers", INT, 0, None, False)],
    "train pretrain": [
        ("--epochs", INT, 1, None, True),
        ("--batch-size", INT, 1, None, True),
        ("--micro-batch", INT, 0, None, True),  # 0 may mean "not set", like --batch-size 0
        ("--lr", FLOAT, 0, None, True),
        ("--workers", INT, 0, None, False),
        ("--max-steps", INT, 0, None, True),
        ("--gpus", INT, 0, None, True),
        ("--procs", INT, 0, None, False),
        ("--nodes", INT, 1, None, True),
        ("--node-rank", INT, 0, None, True),
        ("--master-port", INT, 0, 65535, True),
    ],
    "train extract": [
        ("--batch-size", INT, 1, None, True),
        ("--workers", INT, 0, None, False),
        ("--procs", INT, 0, None, False),
        ("--gpus", INT, 0, None, True),
        ("--nodes", INT, 1, None, True),
        ("--node-rank", INT, 0, None, True),
        ("--master-port", INT, 0, 65535, True),
    ],
    "train finetune": [
        ("--epochs", INT, 1, None, True),
        ("--batch-size", INT, 1, None, True),
        ("--lr", FLOAT, 0, None, True),
        ("--workers", INT, 0, None, False),
        ("--max-steps", INT, 0, None, True),
        ("--gpus", INT, 0, None, True),
        ("--procs", INT, 0, None, False),
    ],
}
STRING_OPTIONS = {  # (command, option): [(value, must be refused)]
    ("data synth", "--size"): [
        ("0x0", True),
        ("64x", True),
        ("abcx36", True),
        ("-64x36", True),
        ("65x37", False),
        ("16x16", False),
    ],
    ("data synth", "--shots-per-scene"): [
        ("5,2", True),
        ("0,0", True),
        ("a,b", True),
        ("3", False),
    ],
    ("data synth", "--shot-frames"): [("1,1", True), ("40,20", True), ("x", True)],
    ("data synth", "--transitions"): [
        ("0,0,0", True),
        ("-1,1,1", True),
        ("nan,1,1", True),
        ("1,1", True),
    ],
    ("data synth", "--places"): [("nowhere", True)],
    ("train pretrain", "--node-rank"): [("1", True)],  # with --nodes 1
}


def option_values(kind: str, least, most, huge: bool) -> list[tuple[str, bool]]:
    """(value, must be refused) pairs for one numeric option."""

    def below(v: float) -> bool:
        return (least is not None and v < least) or (most is not None and v > most)

    if kind == FLOAT:
        values = [("nan", True), ("inf", most is not None), ("-1", below(-1)), ("0", below(0))]
        values += [("abc", True)]
        if huge:
            values.append((HUGE_FLOAT, below(1e308)))
        if most is not None:
            values.append(("1.5", below(1.5)))
    else:
        values = [("-1", below(-1)), ("0", below(0)), ("1.5", True), ("abc", True), ("nan", True)]
        if huge:
            values.append((HUGE_INT, below(1e20)))
        if most is not None:
            values.append((str(most + 1), True))
    return values


def option_cases(ctx: Context, scale: float) -> list[Case]:
    cases = []
    for command, options in OPTIONS.items():
        for option, kind, least, most, huge in options:
            for value, refuse in option_values(kind, least, most, huge):
                cases.append(_option_case(command, option, value, refuse))
    for (command, option), values in STRING_OPTIONS.items():
        for value, refuse in values:
            cases.append(_option_case(command, option, value, refuse))
    return _take(cases, round(len(cases) * scale), random.Random(ctx.seed + 6))


def _option_case(command: str, option: str, value: str, refuse: bool) -> Case:
    weight = 3 if command.startswith("train") else 1
    return Case(
        "options", f"{command} {option} {value}", _option(command, option, value, refuse), weight
    )


def base_args(ctx: Context, command: str) -> list[str]:
    film = str(ctx.src / "truth.mp4")
    tree, feats = str(ctx.tree), str(ctx.feats)
    quick = ["--epochs", "1", "--max-steps", "1", "--workers", "0", "-q"]
    return {
        "segment": ["segment", film, "-o", "out", "-f", "json,csv", *SEGMENT],
        "eval": ["eval", film, "--truth", str(ctx.truth), "--model", "classic", "-q"],
        "data check": ["data", "check", tree, "-q"],
        "data ingest": ["data", "ingest", film, "--out", "tree", "-q"],
        "data synth": [
            "data",
            "synth",
            "--out",
            "corpus",
            "--movies",
            "1",
            "--shots-per-movie",
            "8",
            "--size",
            "64x36",
            "--workers",
            "1",
            "-q",
        ],
        "data puzzles": ["data", "puzzles", tree, "--out", "puzzles", "-q"],
        "train pretrain": [
            "train",
            "pretrain",
            "--data",
            tree,
            "--out",
            "run",
            "--encoder",
            "effnet-lite0",
            "--method",
            "instance",
            "--batch-size",
            "4",
            *quick,
        ],
        "train extract": [
            "train",
            "extract",
            "--data",
            tree,
            "--encoder",
            "effnet-lite0",
            "--out",
            "feats",
            "--workers",
            "0",
            "--batch-size",
            "8",
        ],
        "train finetune": [
            "train",
            "finetune",
            "--data",
            tree,
            "--features",
            feats,
            "--out",
            "run",
            "--batch-size",
            "4",
            *quick,
        ],
    }[command]


def _with_option(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option`` set to ``value`` (replacing its default in ``args``)."""
    if option in args:
        i = args.index(option)
        return [*args[:i], option, value, *args[i + 2 :]]
    return [*args, option, value]


def _option(command: str, option: str, value: str, refuse: bool):
    def fn(ctx: Context, run: Run, d: Path) -> None:
        args = _with_option(base_args(ctx, command), option, value)
        run.facts["must_refuse"] = refuse
        proc = ctx.run(d, args)
        judge(run, proc)
        if refuse and proc.code == 0:
            run.flag("other failure", "bad value accepted (exit 0)")
        elif refuse and proc.code == 1:
            run.flag("other failure", "bad value refused with exit 1, not 2")
        elif proc.code is not None and proc.code not in (0, 1, 2, 3) and not proc.hang:
            run.flag("other failure", f"exit {proc.code}")
        if command == "segment" and proc.code is not None:
            check_set(run, proc, d / "out", "truth", None)

    return fn


BUILDERS = {
    "corrupt": corrupt_cases,
    "odd": odd_cases,
    "interrupt": interrupt_cases,
    "concurrency": concurrency_cases,
    "disk": disk_cases,
    "weights": weights_cases,
    "download": download_cases,
    "options": option_cases,
}


def _take(items: list, n: int, rng: random.Random) -> list:
    """The first ``n`` of a seeded sample of ``items``, kept in their order (all if n >= len)."""
    if n >= len(items):
        return items
    keep = sorted(rng.sample(range(len(items)), max(1, n)))
    return [items[i] for i in keep]


# --------------------------------------------------------------------------------------------
# Set-up, the run, the table


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def package_path(ctx: Context) -> str:
    code = "import scenecut, sys; print(scenecut.__file__)"
    proc = subprocess.run(
        [ctx.python, "-c", code],
        cwd=ctx.work,
        env=ctx.env(ctx.work),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"cannot import scenecut: {proc.stderr.strip()[-300:]}")
    path = proc.stdout.strip()
    if ctx.args.source and not Path(path).resolve().is_relative_to(Path(ctx.args.source).resolve()):
        raise SystemExit(f"--source {ctx.args.source}: the runs would import {path} instead")
    return path


def prepare(ctx: Context, categories: list[str]) -> None:
    """Inputs each selected category needs, and a plain run that must succeed."""
    from scenecut.data.synth import make_film

    say("fuzz: making the inputs")
    make_sources(ctx)
    if "odd" in categories:
        make_odd_inputs(ctx)
    if "weights" in categories:
        make_weights(ctx)
    if "options" in categories:
        truth = make_film(ctx.src / "truth.mp4", **dict(FILM, seed=ctx.seed, threads=1))
        ctx.truth = ctx.src / "truth.txt"
        starts = [f"{float(s / truth.fps):.3f}\n" for s in truth.scene_starts]
        ctx.truth.write_text("".join(starts))
        home = {"SCENECUT_HOME": str(ctx.src / "home")}
        env = {**ctx.env(ctx.src), **home}
        env.pop("PYTHONPATH", None)  # the tree is made by the scenecut running this script
        for args in (
            [
                "data",
                "synth",
                "--out",
                "tree",
                "--movies",
                "4",
                "--shots-per-movie",
                "24",
                "--size",
                "64x36",
                "--workers",
                "1",
                "--seed",
                str(ctx.seed),
                "-q",
            ],
            [
                "train",
                "extract",
                "--data",
                "tree",
                "--encoder",
                "effnet-lite0",
                "--out",
                "feats",
                "--workers",
                "0",
                "--batch-size",
                "8",
            ],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "scenecut", *args],
                cwd=ctx.src,
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(f"set-up {' '.join(args)} failed: {proc.stderr[-500:]}")
        ctx.tree, ctx.feats = ctx.src / "tree", ctx.src / "feats"
    if "interrupt" in categories:
        make_film(
            ctx.src / "long.mp4",
            **dict(
                FILM,
                seed=ctx.seed + 1,
                n_scenes=10,
                shot_frames=(30, 60),
                width=512,  # a size every version handles (270 rows crashed before 7bf05e0)
                height=288,
                audio=True,
                threads=1,
            ),
        )
    # The control: the plain command must work, or nothing below means anything.
    control = ctx.work / "control"
    control.mkdir()
    for name in ("base.mp4", "long.mp4"):
        if (ctx.src / name).exists():
            shutil.copyfile(ctx.src / name, control / name)
            proc = ctx.run(
                control,
                ["segment", name, "--save-clips", "-f", "json,csv", *SEGMENT, "-o", f"out-{name}"],
            )
            if (
                proc.code != 0
                or output_set(control / f"out-{name}", Path(name).stem).state != "complete"
            ):
                raise SystemExit(f"control run on {name} failed: {proc.stderr.text[-500:]}")
            if name == "long.mp4":
                ctx.calibration = proc.seconds
    if "interrupt" in categories:
        say(f"fuzz: a plain run on the interrupt film takes {ctx.calibration:.1f} s")


def execute(ctx: Context, cases: list[Case], workers: int) -> list[Run]:
    runs: list[Run | None] = [None] * len(cases)
    order = sorted(range(len(cases)), key=lambda i: -cases[i].weight)  # long ones first

    def one(i: int) -> Run:
        case = cases[i]
        d = ctx.work / "runs" / f"{i:04d}"
        d.mkdir(parents=True)
        run = Run(case.category, case.name)
        try:
            case.fn(ctx, run, d)
        except Exception as exc:  # the harness's own failure: shown, never counted as ok
            run.flag("other failure", f"harness error: {exc!r}"[:300])
        if not ctx.args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return run

    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(one, i): i for i in order}
        for future in as_completed(futures):
            runs[futures[future]] = future.result()
            done += 1
            if done % 25 == 0 or done == len(cases):
                say(f"fuzz: {done}/{len(cases)} runs")
    return [r for r in runs if r is not None]


def table(runs: list[Run], categories: list[str]) -> str:
    head = ["category", "runs", "ok", *FLAGS]
    rows = []
    for cat in categories:
        mine = [r for r in runs if r.category == cat]
        counts = [sum(f in r.flags for r in mine) for f in FLAGS]
        rows.append([CATEGORIES[cat], len(mine), sum(r.ok for r in mine), *counts])
    totals = [sum(row[i] for row in rows) for i in range(1, len(head))]
    rows.append(["total", *totals])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [" | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    for row in rows:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(x).rjust(w) for x, w in zip(row[1:], widths[1:], strict=True)]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def details(runs: list[Run], categories: list[str]) -> str:
    """Under the table: what the failures were, per category, most frequent first."""
    out = []
    for cat in categories:
        mine = [r for r in runs if r.category == cat and not r.ok]
        if not mine:
            continue
        out.append(f"{CATEGORIES[cat]}:")
        notes = Counter(_generic(n) for r in mine for n in r.notes)
        for note, count in notes.most_common(8):
            out.append(f"  {count:3d} x {note}")
        bugs = Counter(b[:150] for r in mine for b in r.facts.get("bug_lines", []))
        for bug, count in bugs.most_common(4):
            out.append(f"  exit 3 ({count}): {bug}")
        for flag in ("hang", "partial set", "temp left", "silent frame loss", "traceback"):
            names = [r.case for r in mine if flag in r.flags]
            if names:
                shown = ", ".join(repr(n)[1:-1][:50] for n in names[:4])
                more = f" and {len(names) - 4} more" if len(names) > 4 else ""
                out.append(f"  {flag}: {shown}{more}")
    corrupt = [r for r in runs if r.category == "corrupt"]
    if corrupt:
        lost = [r for r in corrupt if r.facts.get("frames_lost") and r.exit == 0]
        loose = sum(bool(r.facts.get("warned_frame")) for r in lost)
        inexact = sum(bool(r.facts.get("clip_problems")) for r in corrupt)
        out.append(
            f"corrupt files that lost frames and exited 0: {len(lost)}, of which {loose} had a "
            f"warning: line mentioning a frame; runs whose clips were not frame accurate (not "
            f"counted above): {inexact}"
        )
    kills = [r for r in runs if r.category == "interrupt" and r.case.startswith("SIGKILL")]
    if kills:
        stale = sum(bool(r.facts.get("temps_after_signal")) for r in kills)
        out.append(f"kill -9 runs that left a temporary file behind (not counted above): {stale}")
    return "\n".join(out)


def _generic(note: str) -> str:
    """A note with its per-run specifics cut, so that equal failures count together."""
    import re

    note = re.sub(r"\(\d+(\.\d+)?\)", "(N)", note)
    return re.sub(r"scene \d+", "scene N", note)[:170]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="runs per category x this")
    parser.add_argument("--runs", type=int, help="about this many runs in all (sets --scale)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per process")
    parser.add_argument(
        "--download-timeout",
        type=float,
        default=120.0,
        help="seconds per `weights pull` (a stalled server may take its read timeout x retries)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--source", type=Path, help="run the scenecut package in this checkout")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the runs")
    parser.add_argument("--only", help="comma-separated categories: " + ", ".join(CATEGORIES))
    parser.add_argument("--json", type=Path, help="also write every run's record here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    categories = args.only.split(",") if args.only else list(CATEGORIES)
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        parser.error(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    if args.source:
        args.source = args.source.resolve()
    work = Path(tempfile.mkdtemp(prefix="scenecut-fuzz-"))
    ctx = Context(args, work)
    server = None
    started = time.monotonic()
    try:
        package = package_path(ctx)
        say(f"fuzz: runs import {package}; work folder {work}")
        prepare(ctx, categories)
        if "download" in categories:
            server = start_server(ctx)
        scale = args.scale
        if args.runs:
            full = sum(len(BUILDERS[c](ctx, 1.0)) for c in categories)
            scale = args.runs / full
        cases = [case for c in categories for case in BUILDERS[c](ctx, scale)]
        say(f"fuzz: {len(cases)} runs on {args.workers} workers, {args.timeout:.0f} s limit each")
        runs = execute(ctx, cases, args.workers)
    finally:
        Misbehaving.stop.set()
        if server:
            server.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - started
    seconds = [r.seconds for r in runs]
    print(f"scenecut reliability campaign: seed {args.seed}, scale {scale:.2f}, package {package}")
    print(table(runs, categories))
    print(
        f"{len(runs)} runs, {sum(r.ok for r in runs)} ok; wall {wall / 60:.1f} min on "
        f"{args.workers} workers; median run {statistics.median(seconds):.2f} s; "
        f"limit {args.timeout:.0f} s per process"
    )
    notes = details(runs, categories)
    if notes:
        print(notes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "scale": scale,
            "package": package,
            "wall_s": wall,
            "runs": [dataclasses.asdict(r) for r in runs],
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
