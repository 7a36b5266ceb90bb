"""About tab: the serving model's card (re-read whenever the tab opens, so a hot-swapped model
shows at once), the refit, what a restart would lose (:func:`config_warnings`), the citation."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import gradio as gr

from apex.scorer import DEMO_NOTICE
from apex.settings import Settings
from apex.tasks import APEX_BIBTEX
from webui.services import LABELS, NotReady, Services

REFIT_TEXT = """### How the model improves
1. **Inputs.** MERT embeddings of songs with engagement data (streams, likes) and of every Arena
   vote whose two clips are embedded.
2. **Loss.** The reference multi-task regression plus a Bradley-Terry loss on the battles.
3. **Gate.** The new model (the *challenger*) serves only if, on the same held-out votes and songs,
   no gated metric (pairwise accuracy, Spearman correlations) is worse beyond a tolerance.
4. **Swap.** Models are versioned with both models' figures and swapped atomically, the arena's
   clips re-scored in the background; the champion serves after a failed refit and a restart.
"""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def model_info(services: Services) -> dict[str, Any]:
    """``Scorer.info()`` plus the software versions (``{"warming_up": msg}`` while loading)."""
    try:
        info = dict(services.scorer.info())
    except NotReady as err:
        info = {"warming_up": str(err)}
    packages = ("apex-arena", "gradio", "torch", "transformers", "pandas", "plotly")
    info["software"] = {p: _version(p) for p in packages}
    info["software"]["python"] = platform.python_version()
    return info


def _shown(value: Any) -> str:
    """'-' for a missing or NaN figure (e.g. no engagement targets on held-out songs)."""
    if value is None or value != value:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _metric_lines(metrics: Any, indent: str = "") -> list[str]:
    """Metrics as a bullet list; nested dicts (e.g. Spearman per score) become sub-bullets."""
    if not isinstance(metrics, dict) or not metrics:
        return [f"{indent}- _no metrics recorded for this model_"]
    lines = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            lines.append(f"{indent}- `{key}`:")
            lines += _metric_lines(value, indent + "    ")
        else:
            lines.append(f"{indent}- `{key}`: {_shown(value)}")
    return lines


def refit_lines(services: Services) -> list[str]:
    """The refit schedule, when the next one is due and why, and what the last one decided."""
    settings = services.settings
    if settings.refit_hours <= 0:
        return ["Refits are off on this deployment (`APEX_REFIT_HOURS=0`)."]
    lines = [
        f"A refit runs every {settings.refit_hours:g} h when there are new votes, or after "
        f"{settings.refit_min_votes} new votes, whichever comes first."
    ]
    if settings.model_pinned:
        lines.append(
            f"**The model is pinned** (`APEX_MODEL={settings.model}`): promoted refits are "
            "recorded in the model registry but do not replace it. Set `APEX_MODEL=auto` to "
            "let the registry's champion serve."
        )
    try:
        worker = services.get("refit")
    except NotReady as err:
        return [*lines, f"_{err}_"]
    status = worker.status
    lines.append(_next_refit(worker.next_due(), running=status.running))
    if not status.runs:
        return [*lines, "No refit has run since the app started."]
    trigger = {"votes": "enough new votes", "schedule": "the schedule", "asked": "a request"}
    outcome = (
        f"failed ({status.last_error}); the serving model keeps serving"
        if status.last_error
        else "was promoted and now serves"
        if status.last_promoted
        else "was not promoted: the gate kept the serving model"
    )
    reasons = "; ".join(status.last_reasons or [])
    lines.append(
        f"Last refit (run by {trigger.get(status.last_trigger, 'a request')}): version "
        f"`{status.last_version}` {outcome}"
        + (f" — {reasons}" if reasons else "")
        + f" ({status.runs} run{'' if status.runs == 1 else 's'} so far)."
    )
    new, old = status.last_figures.get("challenger"), status.last_figures.get("serving")
    if new:
        lines += ["", *figures_table(new, old, "challenger", "serving model")]
    if status.last_note:
        lines += ["", f"_Note: {status.last_note}._"]
    return lines


def _next_refit(left: dict[str, float], *, running: bool) -> str:
    """When the next refit is due and why, in words (from ``RefitWorker.next_due``)."""
    if running:
        return "A refit is running now."
    votes = int(left["votes_left"])
    if left["hours_left"] <= 0:
        return (
            f"Next refit: as soon as a new vote arrives (the schedule is due), or after {votes} "
            "more votes."
        )
    return (
        f"Next refit: in {left['hours_left']:.1f} h (schedule, if new votes arrived by then) or "
        f"after {votes} more votes, whichever comes first ({int(left['new_votes'])} new so far)."
    )


def _revision(value: Any) -> str:
    return f", revision `{value}`" if value else ""


def _identity_lines(info: dict[str, Any]) -> list[str]:
    """Which heads and which encoder answer, with their Hub revisions and where they came from."""
    names = info.get("files") or []
    files = f", files {', '.join(f'`{f}`' for f in names)}" if names else ""
    cached = {True: " (local Hugging Face cache)", False: " (downloaded from the Hub)"}
    heads_from = f"`{info.get('heads_from', '?')}`{cached.get(info.get('from_cache'), '')}"
    return [
        f"- **Model:** `{info.get('model_id', '?')}` (version `{info.get('version', '?')}`, "
        f"{info.get('kind', '')}{_revision(info.get('revision'))}{files})",
        f"- **Loaded from:** {heads_from}",
        f"- **Encoder:** `{info.get('encoder_id', '?')}`{_revision(info.get('encoder_revision'))}"
        + (" (built-in fallback, not MERT)" if info.get("encoder_is_fallback") else ""),
    ]


def figures_table(
    challenger: dict[str, Any], serving: dict[str, Any] | None, new: str, old: str
) -> list[str]:
    """Markdown table of the gate's figures: the new model beside the one serving at the time."""
    from apex.training.gate import GATED

    serving = serving or {}
    gated = [(key, label) for key, (_, label) in GATED.items()]
    rows = [
        f"| {n} | {_shown(challenger.get(k))} | {_shown(serving.get(k))} |"
        for k, n in (*gated, ("battles", "held-out decisive battles"))
    ]
    return [f"| metric | {new} | {old} |", "|---|---|---|", *rows]


def gate_lines(info: dict[str, Any], settings: Any) -> list[str]:
    """How the serving model won its place: its gate record in the model registry, if any."""
    from apex.training.registry import registry_for

    version = str(info.get("version", ""))
    record = registry_for(settings).gate_record(version) if version.startswith("v") else None
    if not record or "gate" not in record:
        return []
    gate = record["gate"]
    verdict = "promoted" if gate.get("promote") else "not promoted"
    return [
        "",
        f"**Gate record:** `{version}` was {verdict} against `{gate.get('serving_version')}`, "
        "both evaluated on the same held-out votes and songs:",
        "",
        *figures_table(gate.get("challenger", {}), gate.get("serving"), "this model", "replaced"),
    ]


def model_card_markdown(info: dict[str, Any], services: Services) -> str:
    """The card: serving model, encoder, metrics, what a restart would lose, services, refits."""
    if "warming_up" in info:
        head = [f"### Serving model\n_{info['warming_up']}_"]
    else:
        head = ["### Serving model", *_identity_lines(info)]
        if info.get("is_demo"):
            head.append(f"- **Offline demo model:** {DEMO_NOTICE}")
        for note in info.get("notices", []):  # the demo's reason for answering carries "Reason:"
            demo = info.get("is_demo") and "Reason:" in note
            head.append(f"- **{'Why the demo answers' if demo else 'Note'}:** {note}")
        head += gate_lines(info, services.settings)
        head += ["", "**Metrics**", *_metric_lines(info.get("metrics"))]
    votes = sync = None
    if services.ready("store") and services.ready("sync"):
        votes, sync = int(services.store.counts()["votes"]), services.get("sync").status()
    restart = ["### If this deployment restarted now", state_line(services.settings, votes, sync)]
    restart += [f"- **Lost at every restart:** {w}" for w in config_warnings(services.settings)]
    software = ", ".join(f"{k} {v}" for k, v in info.get("software", {}).items())
    status = [
        f"- {LABELS.get(name, name)}: {st.state}"
        + (f" ({st.seconds:.1f} s)" if st.seconds is not None else "")
        + (f" — {st.detail}" if st.detail else "")
        for name, st in services.status().items()
    ]
    lines = [*head, "", *restart, "", "### Services", *status, ""]
    lines += [f"**Software:** {software}", "", REFIT_TEXT, *refit_lines(services)]
    return "\n".join(lines)


def build(services: Services, tab: gr.Tab) -> None:
    """Lay out the About tab; the card is (re)read whenever the tab is selected."""
    gr.Markdown(
        "## APEX Arena\nAPEX predicts from audio alone how an AI-generated song will do: two "
        "engagement scores (streams, likes; 0-100) and five aesthetic scores (SongEval's "
        "definitions; 1-5), from frozen MERT embeddings and small multi-task heads. Paper: "
        "[arXiv 2605.03395](https://arxiv.org/abs/2605.03395); reference code "
        "[AMAAI-Lab/apex](https://github.com/AMAAI-Lab/apex)."
    )
    card = gr.Markdown(elem_id="model-card")
    with gr.Accordion("Raw model info (JSON)", open=False):
        raw = gr.JSON()
    gr.Markdown(
        "### Citation\nIf you use APEX or the Arena's preference data, please cite the APEX paper "
        "(AMAAI-Lab, Singapore University of Technology and Design)."
    )
    gr.Code(APEX_BIBTEX, language=None, interactive=False, label="BibTeX")

    def _refresh() -> tuple[str, dict[str, Any]]:
        info = model_info(services)
        return model_card_markdown(info, services), info

    tab.select(_refresh, None, [card, raw], api_visibility="private")


def has_token() -> bool:
    """True when ``huggingface_hub`` has a token to push with (``HF_TOKEN`` or a stored login)."""
    from huggingface_hub import get_token

    return bool(get_token())


def config_warnings(settings: Settings) -> list[str]:
    """Sentences for what this configuration loses at every restart of a Space ([] elsewhere)."""
    if not os.environ.get("SPACE_ID"):  # set on a Hugging Face Space
        return []
    unset = {
        "votes": "APEX_VOTES_REPO is not set: every vote is lost at the next restart (a Space's "
        "disk is wiped at every restart, rebuild and wake). Set it to a dataset repo id.",
        "promoted models": "APEX_MODEL_REPO is not set: a promoted model is lost at the next "
        "restart and the published model serves again. Set it to a model repo id.",
    }
    out = []
    for what, repo in (("votes", settings.votes_repo), ("promoted models", settings.model_repo)):
        if repo is None:
            out.append(unset[what])
        elif not has_token():
            out.append(
                f"HF_TOKEN is not set: {what} cannot be pushed to {repo} and are lost at the next "
                "restart. Add a write token as the Space secret HF_TOKEN."
            )
    return out


def state_line(settings: Settings, votes: int | None, sync_status: Any | None) -> str:
    """One line: what a restart now would lose, and what only a crash would. ``votes``: None while
    the store warms up; ``sync_status``: :meth:`annotation.sync.VoteSync.status` or None."""
    from apex.training.registry import hub_record, registry_for

    if not os.environ.get("SPACE_ID"):
        return (
            f"Self-hosted: a restart loses nothing (votes, models and caches stay in "
            f"`{settings.data_dir}`)."
        )
    votes_lost = settings.votes_repo is None or not has_token()
    lost = [f"all {votes if votes is not None else 'the'} votes"] if votes_lost else []
    champion = registry_for(settings).champion()
    if champion is not None and hub_record(champion) is None:
        lost.append(f"the promoted model `{champion.name}` (not in a model repo)")
    if settings.cache_root is None:
        rebuilt = "caches are rebuilt at start (set APEX_CACHE_DIR to a bucket to keep them)"
    else:
        rebuilt = f"caches stay in `{settings.cache_root}`"
    head = "A restart now would lose " + (", ".join(lost) if lost else "nothing")
    pending = getattr(sync_status, "pending_votes", None)
    if pending and not votes_lost:
        head += (
            f"; {pending} votes not yet on the Hub are pushed by a graceful restart and "
            "lost only in a crash"
        )
    return f"{head}; {rebuilt}."
