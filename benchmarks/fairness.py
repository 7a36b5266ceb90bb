"""Fairness evidence: a style-controlled board on loudness-biased votes; the flags' error rates.

Two simulations, both with known answers:

1. **Style control.** Five systems with true strengths 0, 0.3, ..., 1.2 nats; the weakest makes
   the loudest clips (means -8 ... -20 LUFS, sd 3 LU) and listeners prefer the louder clip by
   0.15 nats per LU (clips played as generated). The plain Bradley-Terry board (Music Arena's
   C=1) and the style-controlled one (duration, loudness, vocals) are printed beside the truth;
   the baseline of the ratio is the plain board's error against the true gaps.
2. **Vote-quality flags.** Honest simulated voters and scripted ones (always-A, too fast,
   contrarian) vote through the real :class:`annotation.arena.Arena` (SQLite store, rules, rate
   limits, loudness matching) on a simulated clock (:mod:`annotation.voter_sim` says how each
   kind listens and picks). Reported: the false-flag rate on honest votes and voters, and the
   share of each scripted kind's votes that are flagged, with the reasons.

    python benchmarks/fairness.py [--votes 6000] [--honest 50] [--per-voter 40]

Ends with one JSON line of the figures. A few minutes at the defaults on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.arena import Arena
from annotation.flags import split_flags
from annotation.ratings import POINTS_PER_NAT, fit_bradley_terry
from annotation.store import SQLiteVoteStore
from annotation.style import fit_style_controlled
from annotation.voter_sim import SimClock, run_voters, write_sim_pool
from apex.demo.listeners import loudness_biased_votes
from apex.settings import Settings

STRENGTHS = {"s0": 0.0, "s1": 0.3, "s2": 0.6, "s3": 0.9, "s4": 1.2}
LOUDNESS = {"s0": -8.0, "s1": -11.0, "s2": -14.0, "s3": -17.0, "s4": -20.0}
EFFECT_PER_LU = 0.15
FLAG_STRENGTHS = {"s0": 0.0, "s1": 0.6, "s2": 1.2, "s3": 1.8, "s4": 2.4}


def style_section(n_votes: int, seed: int) -> dict:
    votes = loudness_biased_votes(
        STRENGTHS, LOUDNESS, effect_per_lu=EFFECT_PER_LU, n_votes=n_votes, seed=seed
    )
    plain = fit_bradley_terry(votes, l2=1.0, bootstrap_rounds=200, seed=seed)
    styled = fit_style_controlled(votes, bootstrap_rounds=200, seed=seed)
    truth = {s: 1000.0 + POINTS_PER_NAT * (v - np.mean(list(STRENGTHS.values())))
             for s, v in STRENGTHS.items()}  # fmt: skip
    print(f"\nStyle control: {n_votes} simulated votes, louder clip favoured by "
          f"{EFFECT_PER_LU} nats/LU; the weakest system (s0) is the loudest.")  # fmt: skip
    print(f"{'system':8} {'true':>7} | {'plain':>7} {'95% CI':>15} {'rank':>4} | "
          f"{'controlled':>10} {'95% CI':>15} {'rank':>4}")  # fmt: skip
    plain_rank = {s: i + 1 for i, s in enumerate(plain.index)}
    styled_rank = {s: i + 1 for i, s in enumerate(styled.ratings.index)}
    for system in sorted(STRENGTHS, key=STRENGTHS.get, reverse=True):
        p, c = plain.loc[system], styled.ratings.loc[system]
        print(f"{system:8} {truth[system]:7.0f} | {p['rating']:7.0f} "
              f"{p['ci_low']:7.0f}-{p['ci_high']:<7.0f} {plain_rank[system]:4d} | "
              f"{c['rating']:10.0f} {c['ci_low']:7.0f}-{c['ci_high']:<7.0f} "
              f"{styled_rank[system]:4d}")  # fmt: skip
    print("\nFitted effects (Elo points):")
    for name, e in styled.effects.iterrows():
        print(f"  {name:9} {e['per_sd']:+7.1f} per SD [{e['ci_low']:+.1f}, {e['ci_high']:+.1f}]"
              f"  = {e['per_unit']:+.2f} per {e['unit']}")  # fmt: skip
    print(f"  (true loudness effect: {EFFECT_PER_LU * POINTS_PER_NAT:+.2f} per LU louder)")

    def error(table):
        gaps = table["rating"] - table["rating"].mean()
        return float(np.mean([abs(gaps[s] - (truth[s] - 1000.0)) for s in STRENGTHS]))

    order = sorted(STRENGTHS, key=STRENGTHS.get, reverse=True)
    return {
        "votes": n_votes,
        "plain_order_correct": list(plain.index) == order,
        "controlled_order_correct": list(styled.ratings.index) == order,
        "plain_mean_abs_error_points": round(error(plain), 1),
        "controlled_mean_abs_error_points": round(error(styled.ratings), 1),
        "error_ratio_plain_over_controlled": round(error(plain) / error(styled.ratings), 2),
        "loudness_points_per_lu": round(float(styled.effects.loc["loudness", "per_unit"]), 2),
        "true_loudness_points_per_lu": round(EFFECT_PER_LU * POINTS_PER_NAT, 2),
    }


def flags_section(honest: int, per_voter: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="apex-fairness-") as name:
        tmp = Path(name)
        settings = Settings.from_env({}, data_dir=tmp / "data", salt="bench", min_listen_s=5.0)
        pool = write_sim_pool(tmp / "pool", tuple(FLAG_STRENGTHS), seed=seed)
        clock = SimClock()
        kinds = {"honest": honest, "always_a": 3, "too_fast": 3, "contrarian": 3}
        start = time.perf_counter()
        with SQLiteVoteStore(settings.store_path) as store:
            arena = Arena(settings, pool, store, clock=clock, seed=seed)
            votes = run_voters(
                arena, clock, FLAG_STRENGTHS, kinds, votes_per_voter=per_voter, seed=seed
            )
        seconds = time.perf_counter() - start
        print(
            f"\nVote-quality flags: {len(votes)} votes through the real arena in {seconds:.0f} s "
            f"({honest} honest voters, 3 of each scripted kind, {per_voter} votes each)"
        )
        out = {"votes": len(votes)}
        for kind, group in votes.groupby("kind"):
            marks = [split_flags(f) for f in group["flags"]]
            rate = sum(bool(m) for m in marks) / len(marks)
            reasons = Counter(r for m in marks for r in m)
            voters = group.groupby("user_pseudonym")["flags"].apply(lambda f: (f != "").any())
            print(
                f"  {kind:10} votes flagged {rate:6.1%}  voters with a flag "
                f"{voters.mean():6.1%}  reasons {dict(reasons)}"
            )
            out[f"{kind}_flagged_votes"] = round(rate, 4)
            out[f"{kind}_flagged_voters"] = round(float(voters.mean()), 4)
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=6000, help="style-control votes")
    parser.add_argument("--honest", type=int, default=50, help="honest simulated voters")
    parser.add_argument("--per-voter", type=int, default=40, help="votes per simulated voter")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    style = style_section(args.votes, args.seed)
    flags = flags_section(args.honest, args.per_voter, args.seed)
    print(json.dumps({"benchmark": "fairness", "style": style, "flags": flags}))


if __name__ == "__main__":
    main()
