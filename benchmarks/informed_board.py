"""APEX-informed board vs the plain board: votes needed, and honest intervals, in simulated arenas.

Each replication draws an arena with known strengths: 12 systems, ``theta ~ N(0, 0.8^2)`` nats
(centred), clips from 4 shared prompts; listeners vote TIE with probability ``0.4 s (1 - s)``
(10% between equals, fewer between unequal systems), ``s = sigmoid(theta_a - theta_b)``,
otherwise A with ``s - tie / 2``, so a vote's expected score is ``s``, the quantity the
half-win likelihood estimates; 5% of votes are both-bad. Battles come from
:class:`annotation.sampler.PairSampler` in ``info`` mode fed by the plain ratings (64
bootstrap rounds, refitted every 50 votes, as the app's :class:`annotation.sampler.StoreRatings`
does), so pair counts are as uneven as the arena makes them. Every vote carries APEX's
prediction ``apex_p_a = sigmoid(m_a - m_b + clip noise)`` from one of three kinds of APEX
system strength ``m``:

- ``informative``: ``m = 0.7 * (rho * z + sqrt(1 - rho^2) * e)`` with ``z`` the standardised
  truth, ``e`` noise and ``rho`` the demo model's measured system-level correlation with its
  listeners (:func:`demo_rho`; ``--rho 0.9`` sets one); APEX's scale is deliberately not the
  listeners', so the fit must learn it;
- ``uninformative``: ``m`` independent of the truth;
- ``wrong``: ``-rho`` (anti-correlated).

At checkpoints of the vote count the same votes are fitted plainly
(:func:`annotation.ratings.fit_bradley_terry`, ``l2=1``; coverage of its 500-round bootstrap,
sandwich and posterior intervals; the board shows :data:`BOARD_INTERVAL`) and APEX-informed
(:func:`annotation.informed.fit_informed`). Reported per prior: the votes needed until the mean
Kendall tau with the truth reaches 0.9 and until the top system is right in 90% of replications
(interpolated between checkpoints on a log scale; ``>N`` when never reached), and the coverage of
the 95% intervals (share of (system, checkpoint, replication) intervals containing the centred
true strength, and its lowest value at any checkpoint), the APEX weight at the last checkpoint
and APEX's per-vote agreement with the listeners (to compare with the board's "APEX agrees"
line for a real model). Targets: informative >= 30% fewer votes
to both thresholds; uninformative / wrong <= 10% more; coverage >= 93% everywhere.

Speed: on 100,000 votes among 20 systems (``benchmarks/ratings_speed.py``'s simulation, plus
APEX predictions) the informed fit with its intervals, timed against the plain fit (point only,
and with sandwich intervals) in the same run: target within 2x.

Run: ``python benchmarks/informed_board.py`` (``--quick`` for a smoke run). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from annotation.informed import fit_informed
from annotation.ratings import POINTS_PER_NAT, fit_bradley_terry
from annotation.sampler import PairSampler, pair_key

DEMO_RHO_CACHE = Path("var/bench/informed_demo_rho.json")

PRIORS = ("informative", "uninformative", "wrong")
SYSTEMS, PROMPTS, SPREAD = 12, 4, 0.8
TIE, BOTH_BAD, REFRESH = 0.4, 0.05, 50
#: The plain board's intervals whose coverage is measured; the board shows BOARD_INTERVAL.
PLAIN_INTERVALS = {
    "bootstrap": {"bootstrap_rounds": 500},
    "sandwich": {"interval": "sandwich"},
    "posterior": {"interval": "posterior"},
}
BOARD_INTERVAL = "posterior"


def demo_rho(cache: Path = DEMO_RHO_CACHE) -> dict[str, float]:
    """How informative the demo model is: the Pearson correlation over the demo systems between
    the system strengths :func:`annotation.informed.apex_strengths` derives from the demo model's
    ``apex_p_a`` (the scorer's ``compare`` on the demo pool's clips, fallback encoder) and the
    true ones (the same Bradley-Terry fit of the demo listeners' expected win shares,
    :func:`apex.demo.listeners.outcome_probabilities` on the clips' latent quality). Both over every
    same-prompt pair of clips of different systems. Builds the demo corpus and model on first use
    (a few minutes on CPU) under ``var/``; cached in ``cache``.
    """
    if cache.is_file():
        return json.loads(cache.read_text())
    from annotation.informed import apex_strengths
    from apex.demo import ensure_demo_corpus, load_metadata
    from apex.demo.listeners import outcome_probabilities
    from apex.loader import load_scorer
    from apex.settings import Settings

    settings = Settings.from_env()
    corpus = Path(ensure_demo_corpus(settings))
    meta = load_metadata(corpus)
    scorer = load_scorer("demo", encoder="fallback", device="cpu", settings=settings)
    results = scorer.score([str(corpus / name) for name in meta["file_name"]])
    meta["apex"] = [r.preference for r in results]
    pairs = meta.merge(meta, on="prompt", suffixes=("_a", "_b"))
    pairs = pairs[pairs["system_a"] < pairs["system_b"]]
    truth = outcome_probabilities(pairs["quality_a"], pairs["quality_b"])
    share = (truth["A"] + 0.5 * truth["TIE"]) / (1.0 - truth["BOTH_BAD"])
    margin = (pairs["apex_a"] - pairs["apex_b"]).to_numpy(dtype=np.float64)
    table = pairs[["system_a", "system_b"]].assign(preference="A")
    true = apex_strengths(table.assign(apex_p_a=share))
    model = apex_strengths(table.assign(apex_p_a=1.0 / (1.0 + np.exp(-margin))))
    out = {
        "rho": float(np.corrcoef(true, model.reindex(true.index))[0, 1]),
        "systems": len(true),
        "clip_pairs": len(pairs),
        "true_sd_nats": float(true.std()),
        "apex_sd_nats": float(model.std()),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def checkpoints(max_votes: int) -> list[int]:
    """Vote counts at which the boards are fitted: geometric from 60."""
    points = np.unique(np.round(np.geomspace(60, max_votes, 14)).astype(int))
    return [int(p) for p in points]


def arena(
    rep: int, max_votes: int, rho: float
) -> tuple[np.ndarray, pd.DataFrame, dict[str, np.ndarray]]:
    """One simulated arena: truth ``[K]`` nats, the votes table, APEX strengths per prior."""
    rng = np.random.default_rng(1000 + rep)
    names = [f"sys-{n:02d}" for n in range(SYSTEMS)]
    theta = rng.normal(0.0, SPREAD, SYSTEMS)
    theta -= theta.mean()
    z = theta / theta.std()
    apex = {}
    for kind, r in (("informative", rho), ("uninformative", 0.0), ("wrong", -rho)):
        apex[kind] = 0.7 * (r * z + math.sqrt(1 - r**2) * rng.normal(0.0, 1.0, SYSTEMS))
    clips = pd.DataFrame(
        [(f"{s}-p{p}", s, f"p{p}") for s in names for p in range(PROMPTS)],
        columns=["clip_id", "system", "prompt"],
    )
    sampler = PairSampler(clips, mode="info", seed=rep)
    index = {s: n for n, s in enumerate(names)}
    counts: dict[tuple[str, str], int] = {}
    rows, ratings = [], None
    for vote in range(max_votes):
        if vote and vote % REFRESH == 0:
            table = pd.DataFrame(rows)
            ratings = fit_bradley_terry(table, l2=1.0, bootstrap_rounds=64, seed=vote)
        clip_a, clip_b = sampler.sample(pair_counts=counts, ratings=ratings)
        a, b = index[clip_a.split("-p")[0]], index[clip_b.split("-p")[0]]
        key = pair_key(names[a], names[b])
        counts[key] = counts.get(key, 0) + 1
        p_a = 1.0 / (1.0 + math.exp(-(theta[a] - theta[b])))
        tie = TIE * p_a * (1.0 - p_a)
        u = rng.random()
        pref = "A" if u < p_a - tie / 2 else "TIE" if u < p_a + tie / 2 else "B"
        if rng.random() < BOTH_BAD:
            pref = "BOTH_BAD"
        noise = rng.normal(0.0, 0.3)
        row = {"system_a": names[a], "system_b": names[b], "preference": pref}
        for kind, m in apex.items():
            row[f"apex_{kind}"] = 1.0 / (1.0 + math.exp(-(m[a] - m[b] + noise)))
        rows.append(row)
    return theta, pd.DataFrame(rows), apex


def score(board: pd.DataFrame, theta: np.ndarray) -> tuple[float, bool, np.ndarray]:
    """Kendall tau with the truth, whether the top is right, and which intervals cover."""
    names = [f"sys-{n:02d}" for n in range(SYSTEMS)]
    board = board.reindex(names)
    rating = board["rating"].fillna(board["rating"].mean()).to_numpy()
    truth = 1000.0 + POINTS_PER_NAT * theta
    tau = kendalltau(rating, truth).statistic
    top = int(np.argmax(rating)) == int(np.argmax(theta))
    centre = rating.mean()
    covered = (board["ci_low"] - centre + 1000.0 <= truth) & (
        truth <= board["ci_high"] - centre + 1000.0
    )
    return float(tau), bool(top), covered.to_numpy()


def votes_to(points: list[int], values: np.ndarray, level: float) -> float:
    """First vote count at which ``values`` (per checkpoint) reaches ``level``, log-interpolated."""
    for n in range(len(points)):
        if values[n] >= level:
            if n == 0:
                return float(points[0])
            x0, x1, y0, y1 = math.log(points[n - 1]), math.log(points[n]), values[n - 1], values[n]
            return float(math.exp(x0 + (level - y0) / (y1 - y0) * (x1 - x0)))
    return math.inf


def run(reps: int, max_votes: int, rho: float = 0.9) -> dict:
    points = checkpoints(max_votes)
    shape = (reps, len(points))
    tau = {k: np.zeros(shape) for k in ("plain", *PRIORS)}
    top = {k: np.zeros(shape) for k in tau}
    cover = {k: np.zeros(shape) for k in (*tau, *PLAIN_INTERVALS)}
    weight = {k: np.zeros(shape) for k in PRIORS}
    agree = dict.fromkeys(PRIORS, 0.0)
    fit_s = {k: 0.0 for k in tau}
    for rep in range(reps):
        theta, votes, _ = arena(rep, max_votes, rho)
        decided = votes[votes["preference"].isin(["A", "B"])]
        for kind in PRIORS:  # per-vote agreement, comparable with the board's "APEX agrees" line
            picked_a = decided[f"apex_{kind}"] > 0.5
            agree[kind] += float((picked_a == (decided["preference"] == "A")).mean()) / reps
        for c, n in enumerate(points):
            sub = votes.iloc[:n]
            start = time.perf_counter()
            plain = fit_bradley_terry(sub, l2=1.0, interval=BOARD_INTERVAL)
            fit_s["plain"] += time.perf_counter() - start
            tau["plain"][rep, c], top["plain"][rep, c], cov = score(plain, theta)
            cover["plain"][rep, c] = cov.mean()
            for name, options in PLAIN_INTERVALS.items():
                board = fit_bradley_terry(sub, l2=1.0, seed=c, **options)
                cover[name][rep, c] = score(board, theta)[2].mean()
            for kind in PRIORS:
                start = time.perf_counter()
                fit = fit_informed(sub.rename(columns={f"apex_{kind}": "apex_p_a"}))
                fit_s[kind] += time.perf_counter() - start
                tau[kind][rep, c], top[kind][rep, c], cov = score(fit.ratings, theta)
                cover[kind][rep, c] = cov.mean()
                weight[kind][rep, c] = fit.weight
    out = {"reps": reps, "max_votes": max_votes, "checkpoints": points}
    plain_tau = votes_to(points, tau["plain"].mean(0), 0.9)
    plain_top = votes_to(points, top["plain"].mean(0), 0.9)
    out["plain"] = {
        "votes_tau": plain_tau,
        "votes_top": plain_top,
        "coverage": float(cover["plain"].mean()),
        "coverage_min": float(cover["plain"].mean(0).min()),
    }
    for name in PLAIN_INTERVALS:  # the plain board's candidate intervals
        out["plain"][f"coverage_{name}"] = float(cover[name].mean())
        out["plain"][f"coverage_{name}_min"] = float(cover[name].mean(0).min())
        out["plain"][f"coverage_{name}_min_at_votes"] = points[int(np.argmin(cover[name].mean(0)))]
    for kind in PRIORS:
        vt = votes_to(points, tau[kind].mean(0), 0.9)
        vp = votes_to(points, top[kind].mean(0), 0.9)
        out[kind] = {
            "votes_tau": vt,
            "votes_top": vp,
            "tau_ratio": vt / plain_tau,
            "top_ratio": vp / plain_top,
            "coverage": float(cover[kind].mean()),
            "coverage_min": float(cover[kind].mean(0).min()),
            "coverage_min_at_votes": points[int(np.argmin(cover[kind].mean(0)))],
            "apex_agreement": agree[kind],
            "weight_first": float(weight[kind][:, 0].mean()),
            "weight_last": float(weight[kind][:, -1].mean()),
        }
    out["fit_seconds"] = fit_s
    out["curves"] = {
        k: {
            "tau": tau[k].mean(0).round(3).tolist(),
            "top": top[k].mean(0).round(3).tolist(),
            "coverage": cover[k].mean(0).round(3).tolist(),
        }
        for k in tau
    }
    return out


def table(out: dict) -> str:
    def fmt(v: float) -> str:
        return f">{out['max_votes']}" if math.isinf(v) else f"{v:.0f}"

    lines = [
        f"{'prior':<14}{'tau>=0.9 plain':>15}{'informed':>10}{'ratio':>7}"
        f"{'top 90% plain':>15}{'informed':>10}{'ratio':>7}{'cover':>8}{'min':>7}{'APEX w':>8}"
        f"{'agree':>7}",
    ]
    p = out["plain"]
    for kind in PRIORS:
        r = out[kind]
        lines.append(
            f"{kind:<14}{fmt(p['votes_tau']):>15}{fmt(r['votes_tau']):>10}{r['tau_ratio']:>7.2f}"
            f"{fmt(p['votes_top']):>15}{fmt(r['votes_top']):>10}{r['top_ratio']:>7.2f}"
            f"{r['coverage']:>8.3f}{r['coverage_min']:>7.3f}{r['weight_last']:>8.2f}"
            f"{r['apex_agreement']:>7.2f}"
        )
    for name in PLAIN_INTERVALS:
        label = f"plain {name}" + (" (board)" if name == BOARD_INTERVAL else "")
        cover, low = p[f"coverage_{name}"], p[f"coverage_{name}_min"]
        lines.append(f"{label:<24}{'':>54}{cover:>8.3f}{low:>7.3f}")
    return "\n".join(lines)


def speed(votes: int = 100_000, repeat: int = 3) -> dict[str, float]:
    """Best-of-``repeat`` seconds: plain fit, plain + sandwich, informed with intervals."""
    from benchmarks.ratings_speed import simulate

    table = simulate(votes, 20, seed=1)
    rng = np.random.default_rng(2)
    names = sorted(set(table["system_a"]) | set(table["system_b"]))
    m = dict(zip(names, rng.normal(0.0, 0.5, len(names)), strict=True))
    diff = table["system_a"].map(m) - table["system_b"].map(m)
    table["apex_p_a"] = 1.0 / (1.0 + np.exp(-diff.to_numpy()))

    fits = {
        "plain_s": lambda: fit_bradley_terry(table, l2=1.0),
        "plain_sandwich_s": lambda: fit_bradley_terry(table, l2=1.0, interval="sandwich"),
        "informed_s": lambda: fit_informed(table),
    }
    out = dict.fromkeys(fits, math.inf)
    for _ in range(repeat):  # interleaved, best of each: a shared machine's noise hits all alike
        for name, fit in fits.items():
            start = time.perf_counter()
            fit()
            out[name] = min(out[name], time.perf_counter() - start)
    out["ratio"] = out["informed_s"] / out["plain_s"]
    out["ratio_vs_sandwich"] = out["informed_s"] / out["plain_sandwich_s"]
    return {k: round(v, 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=24)
    parser.add_argument("--max-votes", type=int, default=3000)
    parser.add_argument(
        "--rho",
        default="demo",
        help="informative APEX's system-level correlation with the truth: a number, or 'demo' "
        "(measured on the demo model, demo_rho)",
    )
    parser.add_argument("--quick", action="store_true", help="4 replications, 600 votes")
    args = parser.parse_args()
    reps, max_votes = (4, 600) if args.quick else (args.reps, args.max_votes)
    start = time.perf_counter()
    demo = demo_rho() if args.rho == "demo" else None
    rho = demo["rho"] if demo else float(args.rho)
    print(f"informative prior: rho = {rho:.3f}" + (f" (demo model: {demo})" if demo else ""))
    out = run(reps, max_votes, rho)
    out["rho"], out["rho_from"] = rho, "demo model" if demo else "given"
    out["speed_100k"] = speed(repeat=1 if args.quick else 7)
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(table(out))
    s = out["speed_100k"]
    print(
        f"100k votes: plain {s['plain_s']:.3f} s, plain+sandwich {s['plain_sandwich_s']:.3f} s, "
        f"informed+intervals {s['informed_s']:.3f} s: {s['ratio']:.2f}x the plain fit "
        f"({s['ratio_vs_sandwich']:.2f}x with its intervals)"
    )
    keys = ("reps", "max_votes", "rho", "rho_from", "plain", *PRIORS, "speed_100k", "seconds")
    summary = {k: out[k] for k in keys}
    print(json.dumps(_finite(summary)))


def _finite(value):
    """The summary with never-reached thresholds (inf) and undefined ratios (NaN) as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    main()
