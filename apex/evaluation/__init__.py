"""Evaluation of APEX heads: the metrics the refit gate reads and the paper's arena protocol.

:mod:`~apex.evaluation.metrics` (regression, pairwise and arena metrics of a model),
:mod:`~apex.evaluation.cv` (battle features, classifier, fold schemes),
:mod:`~apex.evaluation.stats` (bootstrap, permutation test, sign agreement),
:mod:`~apex.evaluation.arena` and :mod:`~apex.evaluation.checks` (``apex eval arena`` on Music
Arena battles), :mod:`~apex.evaluation.scoring` (one model over a release),
:mod:`~apex.evaluation.report` (its text tables). Submodules load on use.
"""
