"""Evaluation of APEX heads: a model's metrics (what the refit gate compares) and the paper's arena
protocol on Music Arena battles (``apex eval arena``). Submodules load on use."""
