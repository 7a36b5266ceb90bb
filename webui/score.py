"""Score tab: one song or two compared; ``/score`` and ``/compare`` return
:meth:`~apex.ScoreResult.to_dict` JSON, which the page draws. Uploads are deleted once scored."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from apex.audio import AudioError
from apex.files import sha256_text, write_text_atomic
from apex.scorer import DEMO_NOTICE
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_DESCRIPTIONS, SCORE_NAMES, SCORE_RANGES, SIDES
from webui import charts, uploads
from webui.services import NotReady, Services


def _scored(services: Services, paths: list[str], progress: Any) -> tuple[Any, list[Any]]:
    """(scorer, one ``ScoreResult`` per path), waiting up to ``APEX_WARMUP_WAIT_S`` for the scorer
    (telling ``gr.Progress``), then releasing each upload. Raises ``gr.Error``: scorer not ready
    in time, or bad audio (without the server's folders)."""
    try:
        scorer = services.wait_for("scorer", progress=progress)
        return scorer, scorer.score(paths)
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None
    except AudioError as err:  # its message says what to do; any other error is a bug
        message = str(err)
        for path in paths:
            message = message.replace(str(Path(path).parent) + os.sep, "")
        raise gr.Error(message, title="Cannot score this file", print_exception=False) from None
    finally:
        leases = uploads.leases_of(services)
        for path in paths:  # one release each: A and B may be one stored upload, sent twice
            leases.release(path)


def score_song(services: Services, audio_path: str | None, progress: Any = None) -> dict[str, Any]:
    """Score one song; return :meth:`ScoreResult.to_dict`. Raises ``gr.Error``: no file, scorer
    not ready in time, or bad audio."""
    if not isinstance(audio_path, str) or not audio_path:
        raise gr.Error("Upload a song or record one first.", title="No song", print_exception=False)
    return _scored(services, [audio_path], progress)[1][0].to_dict()


def compare_songs(
    services: Services, path_a: str | None, path_b: str | None, progress: Any = None
) -> dict[str, Any]:
    """Score two songs: ``{"a": result dict, "b": result dict, "p_prefer_a": 0-1}`` (APEX's
    probability that listeners prefer A)."""
    if not all(isinstance(p, str) and p for p in (path_a, path_b)):
        raise gr.Error(
            "Give two songs to compare (A and B).", title="Two songs needed", print_exception=False
        )
    scorer, (result_a, result_b) = _scored(services, [path_a, path_b], progress)
    p_a = float(scorer.compare(result_a, result_b))
    return {"a": result_a.to_dict(), "b": result_b.to_dict(), "p_prefer_a": p_a}


def _fmt(name: str, value: float) -> str:
    return f"{value:.1f}" if SCORE_RANGES[name][1] > 5 else f"{value:.2f}"


def scores_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per score: name, value, scale, percentile (engagement), what it means."""
    rows = []
    percentiles = result.get("percentiles") or {}
    uncertainty = result.get("uncertainty") or {}
    for name in (n for n in SCORE_NAMES if n in result["scores"]):  # the model's own scores
        low, high = SCORE_RANGES[name]
        value = _fmt(name, result["scores"][name])
        if name in uncertainty:
            value += f" ± {_fmt(name, uncertainty[name])}"
        pct = percentiles.get(name)
        rows.append(
            {
                "score": charts.pretty(name),
                "value": value,
                "scale": f"{low:g}-{high:g}",
                "percentile": "" if pct is None else ordinal(pct),
                "what it means": SCORE_DESCRIPTIONS[name],
            }
        )
    return pd.DataFrame(rows)


def engagement_markdown(result: dict[str, Any]) -> str:
    """Engagement scores with their percentile against the model's reference distribution."""
    lines = ["### Engagement"]
    percentiles = result.get("percentiles") or {}
    for name in (n for n in ENGAGEMENT if n in result["scores"]):
        line = f"- **{charts.pretty(name)}: {result['scores'][name]:.1f} / 100**"
        if name in percentiles:
            line += (
                f" — higher than {percentiles[name]:.0f}% of the songs in the model's "
                "reference distribution"
            )
        lines.append(line)
    if not percentiles:
        lines.append("_This model ships no reference distribution, so no percentiles._")
    return "\n".join(lines)


def banner_markdown(result: dict[str, Any]) -> str:
    """The demo notice (:data:`apex.scorer.DEMO_NOTICE`, first and bold) and the scoring core's
    other warnings (e.g. silence) as a list, or ''."""
    parts = [f"**{DEMO_NOTICE}**"] if result.get("is_demo") else []
    parts += [f"- {w}" for w in result.get("warnings") or [] if w != DEMO_NOTICE]
    return "\n".join(parts)


def ordinal(value: float) -> str:
    """``71 -> '71st'``, ``12 -> '12th'``."""
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def save_json(result: dict[str, Any]) -> str:
    """Write the result as a JSON download into gradio's cache folder, named by its content (served
    without a copy, written once, removed by the app's ``delete_cache``); return its path."""
    text = json.dumps(result, indent=2, sort_keys=True)
    path = uploads.upload_root() / f"apex-json-{sha256_text(text)[:32]}" / "apex-scores.json"
    if not path.exists():
        write_text_atomic(path, text, fsync=False)  # a lost download is written again
    return str(path)


def render_result(result: dict[str, Any]) -> tuple[Any, ...]:
    """Banner, table, radar, text, timeline and JSON file for one song."""
    banner = banner_markdown(result)
    song = Path(str(result.get("name") or "song")).stem or "song"
    header = (
        f"**{song}** · {result.get('duration_s', 0):.1f} s · model `{result.get('model_id')}` · "
        f"encoder `{result.get('encoder_id')}`"
    )
    return (
        gr.update(value=banner, visible=bool(banner)),
        scores_table(result),
        charts.radar({song: result["scores"]}),
        f"{header}\n\n{engagement_markdown(result)}",
        charts.timeline(result.get("segments") or []),
        gr.update(value=save_json(result), visible=True),
    )


def compare_table(pair: dict[str, Any]) -> pd.DataFrame:
    """Side-by-side scores of A and B, with the difference (the scores both results have)."""
    rows = []
    for name in (n for n in SCORE_NAMES if n in pair["a"]["scores"] and n in pair["b"]["scores"]):
        a, b = pair["a"]["scores"][name], pair["b"]["scores"][name]
        rows.append(
            {
                "score": charts.pretty(name),
                "A": _fmt(name, a),
                "B": _fmt(name, b),
                "A - B": f"{a - b:+.2f}",
                "what it means": SCORE_DESCRIPTIONS[name],
            }
        )
    return pd.DataFrame(rows)


def render_compare(pair: dict[str, Any]) -> tuple[Any, ...]:
    """Banner, P(prefer) text, side-by-side table and a two-series radar."""
    p_a = float(pair["p_prefer_a"])
    banner = banner_markdown(pair["a"]) or banner_markdown(pair["b"])
    shown_a, shown_b = f"{p_a:.0%}", f"{1 - p_a:.0%}"
    if shown_a == shown_b:  # a pick the shown odds do not back would mislead
        headline = "APEX expects no preference between A and B"
    else:
        headline = f"APEX expects listeners to prefer **{'A' if p_a > 0.5 else 'B'}**"
    text = f"### {headline}\nP(prefer A) = **{shown_a}** · P(prefer B) = **{shown_b}**"
    radar = charts.radar(
        {"A": pair["a"]["scores"], "B": pair["b"]["scores"]}, title="Aesthetics: A vs B"
    )
    return (gr.update(value=banner, visible=bool(banner)), text, compare_table(pair), radar)


def build(services: Services) -> None:
    """Lay out the Score tab inside the current ``gr.Blocks`` and wire its events."""
    gr.Markdown(
        "Upload a song (WAV, FLAC, OGG or MP3, up to "
        f"{services.settings.max_audio_s / 60:g} min) or record one. APEX predicts two engagement "
        f"scores (0-100) and five aesthetic scores ({', '.join(AESTHETICS)}; 1-5). "
        "Your upload is deleted from the server as soon as it is scored."
    )
    limits = {"concurrency_limit": services.settings.score_concurrency, "concurrency_id": "score"}
    with gr.Tabs():
        with gr.Tab("One song"):
            _one_song(services, limits)
        with gr.Tab("Compare two"):
            _compare_two(services, limits)


def _audio(label: str, elem_id: str, **kwargs: Any) -> gr.Audio:
    return gr.Audio(
        sources=["upload", "microphone"], type="filepath", label=label, elem_id=elem_id, **kwargs
    )


def _one_song(services: Services, limits: dict[str, Any]) -> None:
    with gr.Row():
        audio = _audio("Song", "score-audio", scale=2)
        with gr.Column(scale=1):
            go = gr.Button("Score", variant="primary", elem_id="score-button")
            download = gr.DownloadButton("Download JSON", visible=False)
    banner = gr.Markdown(visible=False, elem_id="score-banner")
    summary = gr.Markdown(elem_id="score-summary")
    table = gr.Dataframe(label="Scores", interactive=False, wrap=True, elem_id="score-table")
    with gr.Row():
        radar = gr.Plot(label="Aesthetics", elem_id="score-radar")
        timeline = gr.Plot(label="Along the song")
    with gr.Accordion("Raw result (JSON)", open=False):
        result = gr.JSON(label="Result")

    def _score(path: str | None, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:
        progress(0.1, desc="Decoding and scoring")
        return score_song(services, path, progress)

    shown = [banner, table, radar, summary, timeline, download]
    go.click(_score, [audio], [result], api_name="score", **limits).success(
        render_result, [result], shown, api_visibility="private"
    )


def _compare_two(services: Services, limits: dict[str, Any]) -> None:
    with gr.Row():
        audio_a, audio_b = (_audio(side, f"compare-{side.lower()}") for side in SIDES)
    go = gr.Button("Compare", variant="primary", elem_id="compare-button")
    banner = gr.Markdown(visible=False)
    text = gr.Markdown(elem_id="compare-text")
    with gr.Row():
        table = gr.Dataframe(interactive=False, wrap=True, scale=3, elem_id="compare-table")
        radar = gr.Plot(label="Aesthetics", scale=2, elem_id="compare-radar")
    result = gr.JSON(visible=False)

    def _compare(
        a: str | None, b: str | None, progress: gr.Progress = gr.Progress()
    ) -> dict[str, Any]:
        progress(0.1, desc="Scoring both songs")
        return compare_songs(services, a, b, progress)

    go.click(_compare, [audio_a, audio_b], [result], api_name="compare", **limits).success(
        render_compare, [result], [banner, text, table, radar], api_visibility="private"
    )
