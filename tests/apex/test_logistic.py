"""The one solver against the three it replaced: every fit's numbers on fixed seeded inputs.

The expected numbers come from the three solvers as they were at commit f26cd63, under their
old names there (``annotation.ratings._solve``, ``annotation.style._solve``,
``apex.evaluation.stats._newton_logistic``; none exists now), printed to 13 significant digits;
the shared :mod:`apex.logistic` must reproduce them to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation import informed
from annotation.informed import fit_informed
from annotation.ratings import fit_bradley_terry
from annotation.style import fit_style_controlled
from apex.evaluation.stats import logistic_oof_proba


def _votes(seed=0, n=400, k=6):
    rng = np.random.default_rng(seed)
    strength = np.linspace(-1.0, 1.0, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    d = strength[a] - strength[b]
    pref = np.where(rng.random(n) < 1 / (1 + np.exp(-(d - 0.3))), "A", "B").astype(object)
    u = rng.random(n)
    pref[u < 0.1] = "TIE"
    pref[(u >= 0.1) & (u < 0.15)] = "BOTH_BAD"
    names = np.array([f"s{x}" for x in range(k)])
    return pd.DataFrame(
        {
            "system_a": names[a],
            "system_b": names[b],
            "preference": pref,
            "apex_p_a": 1 / (1 + np.exp(-(0.8 * d + rng.normal(0, 0.5, n)))),
            "duration_a": rng.uniform(10, 30, n),
            "duration_b": rng.uniform(10, 30, n),
            "loudness_a": rng.normal(-14, 2, n),
            "loudness_b": rng.normal(-14, 2, n),
            "instrumental_a": rng.random(n) < 0.5,
            "instrumental_b": rng.random(n) < 0.5,
        }
    )


def _logistic_inputs(seed=0, n=120, f=3, b=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    y = (x @ np.array([1.0, -0.5, 0.2]) + rng.logistic(size=n) > 0).astype(float)
    labels = np.vstack([y] + [rng.permutation(y) for _ in range(b - 1)])
    fold = np.arange(n) % 3
    return x, labels, fold


PLAIN = [
    879.3963484261,
    889.0083487577,
    919.714890766,
    1044.874909498,
    1110.172223873,
    1156.833278679,
]
L2 = [
    884.025126446,
    893.021328039,
    922.5465059274,
    1043.43179839,
    1105.842412853,
    1151.132828345,
]
L2_BOOT = [
    835.0910949945,
    935.5354048118,
    840.0312243038,
    948.5987138504,
    873.1113001257,
    969.4361787217,
    999.1300358718,
    1079.933021017,
    1062.049048143,
    1142.719924932,
    1095.090316205,
    1188.733450959,
]
L2_SANDWICH = [
    830.4449743004,
    937.6052785916,
    843.698352081,
    942.3443039969,
    871.0027573861,
    974.0902544688,
    998.2820003464,
    1088.581596433,
    1056.112110788,
    1155.572714918,
    1100.399495475,
    1201.866161215,
]
INFORMED = [
    861.3700291664,
    809.119348591,
    913.6207097418,
    895.6342456252,
    852.6489859956,
    938.6195052549,
    945.8646564644,
    900.9531346678,
    990.7761782609,
    1040.543937536,
    1003.724882492,
    1077.36299258,
    1096.815627504,
    1053.716851474,
    1139.914403533,
    1159.771503704,
    1110.527722753,
    1209.015284656,
]
INFORMED_WEIGHT = [
    1.158479362953,
    160.0623078791,
]
INFORMED_FIXED = [
    885.7121746969,
    897.8355294074,
    928.8633255555,
    1041.497860846,
    1100.02105348,
    1146.070056014,
]
STYLE = [
    889.1585478619,
    835.7548922483,
    942.5622034754,
    882.4710064544,
    831.1764527118,
    933.7655601971,
    915.8725152448,
    863.6511681808,
    968.0938623087,
    1042.53687039,
    996.8464168988,
    1088.227323881,
    1109.078648241,
    1059.000222789,
    1159.157073694,
    1160.882411808,
    1108.905952763,
    1212.858870852,
]
STYLE_EFFECTS = [
    -32.31326846744,
    5.140590566547,
    8.485446511127,
    -60.41885413361,
]
STYLE_ML = [
    884.6889929857,
    827.9372953911,
    944.3308241116,
    877.3827033147,
    838.7942903041,
    933.7068820306,
    912.3392877737,
    840.8302557488,
    953.9269276194,
    1044.063017198,
    988.8608511161,
    1081.084644783,
    1113.886885266,
    1045.700260865,
    1165.415622802,
    1167.639113462,
    1142.06701834,
    1233.913928882,
]
STYLE_ML_EFFECTS = [
    -33.0568003482,
    -70.15452946023,
    -0.6301107999322,
    5.10746157197,
    -28.45574753125,
    38.27570023536,
    8.649066150515,
    -48.13258153346,
    45.71876119523,
    -62.58666994692,
    -95.10097376937,
    -34.2601773913,
]
OOF = [
    0.5745213155544,
    0.3810867716843,
    0.5800717562653,
    0.3382261142257,
    0.617373182846,
    0.4493498750306,
    0.6059577926238,
    0.4876338571269,
    0.7195769454578,
    0.75785700813,
    0.6773680748568,
    0.6727836848176,
    0.5214032385362,
    0.4866795647269,
    0.6542329522405,
    0.3875896217574,
    0.4826860267245,
    0.4565547408209,
    0.5664063088038,
    0.3854817408808,
    0.5872291398693,
    0.5165495895222,
    0.5113146551988,
    0.6480083571771,
    0.4499736738992,
    0.5469179156813,
    0.441209629896,
    0.4421973271055,
    0.4328328273854,
    0.6120223094744,
    0.499679218357,
    0.391125332111,
    0.3918982296295,
    0.6261716939873,
    0.4061023629195,
    0.6033442414362,
    0.5236484985172,
    0.4907487053291,
    0.5483632813014,
    0.5025778881449,
    0.4761776480904,
    0.4988303381187,
    0.5179923201493,
    0.3805453576699,
    0.4857200380186,
    0.4436948044032,
    0.5023002285693,
    0.5383293993285,
]


def _close(got, expected) -> None:
    got = np.asarray(got, dtype=np.float64).ravel()
    assert np.max(np.abs(got - np.array(expected))) < 1e-6


def test_bradley_terry_plain_l2_bootstrap_and_sandwich() -> None:
    v = _votes()
    _close(fit_bradley_terry(v, l2=None).sort_index()["rating"], PLAIN)
    t = fit_bradley_terry(v, l2=1.0, bootstrap_rounds=50, seed=3).sort_index()
    _close(t["rating"], L2)
    _close(t[["ci_low", "ci_high"]], L2_BOOT)
    t = fit_bradley_terry(v, l2=1.0, interval="sandwich").sort_index()
    _close(t[["ci_low", "ci_high"]], L2_SANDWICH)


def test_informed_prior(monkeypatch) -> None:
    def half_cauchy(beta, sd, m):  # f26cd63's hyperprior: these pins test the solver, not the prior
        return np.log(sd) - np.log1p(sd**2)

    monkeypatch.setattr(informed, "_log_hyperprior", half_cauchy)
    v = _votes()
    fit = fit_informed(v)
    _close(fit.ratings.sort_index()[["rating", "ci_low", "ci_high"]], INFORMED)
    _close([fit.weight, fit.prior_votes], INFORMED_WEIGHT)
    fixed = fit_informed(v, weight=0.8, prior_sd=0.5, l2=1.0)
    _close(fixed.ratings.sort_index()["rating"], INFORMED_FIXED)


@pytest.mark.parametrize("l2", [1.0, None])
def test_style_controlled(l2) -> None:
    if l2:
        fit = fit_style_controlled(_votes(), l2=1.0, interval="sandwich")
        _close(fit.ratings.sort_index()[["rating", "ci_low", "ci_high"]], STYLE)
        _close(fit.effects["per_sd"], STYLE_EFFECTS)
    else:
        fit = fit_style_controlled(_votes(), l2=None, bootstrap_rounds=20, seed=1)
        _close(fit.ratings.sort_index()[["rating", "ci_low", "ci_high"]], STYLE_ML)
        _close(fit.effects[["per_sd", "ci_low", "ci_high"]], STYLE_ML_EFFECTS)


def test_permutation_logistic() -> None:
    x, labels, fold = _logistic_inputs()
    _close(logistic_oof_proba(x, labels, fold)[:, ::10], OOF)
