"""The human side of APEX Arena: clip pool, battles, vote rules, vote store, ratings, Hub sync.

Import from the modules (docs/DESIGN.md lists them); ``import annotation`` loads nothing, and
nothing here imports gradio.
"""
