"""Evaluation of APEX heads: the metrics the gate reads and the paper's arena protocol.

One home for every figure a model is judged by (importing the package is cheap; submodules load
on use):

- :mod:`apex.evaluation.metrics` -- per-score regression metrics, pairwise accuracy/AUC on
  held-out battles, :func:`~apex.evaluation.metrics.evaluate_model` (the report the refit gate
  compares), :func:`~apex.evaluation.metrics.spearman_noise`, the in-training arena protocol.
- :mod:`apex.evaluation.cv` -- the paper's battle features, classifiers and fold schemes
  (paper / grouped by prompt, pair, both).
- :mod:`apex.evaluation.stats` -- vectorised bootstrap, permutation test, sign agreement.
- :mod:`apex.evaluation.arena` -- the paper's out-of-distribution experiment on Music Arena
  battles (:func:`~apex.evaluation.arena.evaluate_arena`, behind ``apex eval arena``).
- :mod:`apex.evaluation.checks` -- intervals, orientation, inverted-sign and leakage flags.
- :mod:`apex.evaluation.report` -- the arena report's text tables.
"""
