"""Training, evaluation and refit of APEX heads on engagement data and arena preferences.

Import what you use from its module (:mod:`.config` and :mod:`.registry` load without torch):
:mod:`.data` (shards, targets), :mod:`.battles`, :mod:`.losses`, :mod:`.loop` (:func:`train`),
:mod:`.refit` (:func:`run_refit`), :mod:`.gate`, :mod:`.saving`, :mod:`.worker`.
"""
