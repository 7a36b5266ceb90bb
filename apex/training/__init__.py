"""Training, evaluation and refit of APEX heads; import from each module (``config`` and
``registry`` load without torch)."""
