"""``scenecut export``: what ``segment`` writes, from a saved result, regrouped without decoding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import ProgressBars, emit, scene_table, stderr
from scenecut.cli.options import (
    ClipTemplateOption,
    CopyOption,
    FormatOption,
    ImagesPerOption,
    OverwriteOption,
    QuietOption,
    ReportOption,
    SaveClipsOption,
    SaveImagesOption,
    StdoutOption,
    current_settings,
    format_names,
)
from scenecut.output.clips import DEFAULT_TEMPLATE
from scenecut.segment import ExportOptions, export_result


def export(
    ctx: typer.Context,
    result_json: Annotated[
        Path,
        typer.Argument(help="A .scenes.json from `scenecut segment` (or saved from the report)."),
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option("-o", "--output-dir", help="Where outputs go [default: the JSON's folder]."),
    ] = None,
    formats: FormatOption = None,
    stdout: StdoutOption = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Regroup the shots: a gap scoring above this starts a scene [default: keep "
            "the saved scenes].",
            show_default=False,
        ),
    ] = None,
    scenes: Annotated[
        int | None, typer.Option(help="Regroup the shots into this many scenes instead.")
    ] = None,
    min_scene_len: Annotated[
        float | None,
        typer.Option(
            help="Regroup with this minimum scene length in seconds [default: the saved one].",
            show_default=False,
        ),
    ] = None,
    save_clips: SaveClipsOption = False,
    copy: CopyOption = False,
    clip_template: ClipTemplateOption = DEFAULT_TEMPLATE,
    report: ReportOption = False,
    save_images: SaveImagesOption = 0,
    images_per: ImagesPerOption = "scene",
    video: Annotated[
        Path | None,
        typer.Option(
            help="The video, if it is no longer where the JSON says (clips, images, report).",
            show_default=False,
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write scene lists, clips, images or a report from a saved result, without decoding.

    --threshold, --scenes or --min-scene-len regroup the shots from the saved boundary scores,
    giving the files `segment` gives with those options; without them the saved scenes are
    kept as they are, edited or not. The video is read only for clips, images and the report.
    """
    options = ExportOptions(
        formats=format_names(formats, current_settings(ctx).formats),
        save_clips=save_clips,
        copy=copy,
        clip_template=clip_template,
        overwrite=overwrite,
        to_stdout=stdout,
        report=report,
        save_images=save_images,
        images_per=images_per,
    )
    console = stderr()
    with ProgressBars(console, quiet, result_json.name) as progress:
        done = export_result(
            result_json,
            options,
            output_dir,
            threshold=threshold,
            scenes=scenes,
            min_scene_seconds=min_scene_len,
            video=video,
            progress=progress,
        )
    emit(done.json if stdout else "".join(f"{written}\n" for written in done.files))
    if not quiet:
        scene_table(console, done.result)
