"""The human side of APEX Arena: clip pool, battles, vote rules, vote store, ratings, Hub sync.

Subpackages ``pool`` (:func:`~annotation.pool.load_pool`), ``store``
(:func:`~annotation.store.open_store`) and ``sync`` (:class:`~annotation.sync.VoteSync`); the
arena (``arena``, ``rules``, ``reveal``, ``sampler``, ``identity``, ``loudness``,
``flags``), the boards (``board``: vote selection, board service, consensus; ``ratings``,
``style``, ``agreement``, ``informed``), data in and out (``export``, ``card``, ``imports``,
``voter_sim``), refits (``refit_job``, ``refit_worker``) and ``cli`` (``apex votes``). Import
from the modules; ``import annotation`` loads nothing, and nothing here imports gradio.
"""
