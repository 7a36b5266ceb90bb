"""The human side of APEX Arena (clip pool, battles, vote rules and store, ratings, Hub sync):
import from the modules (docs/DESIGN.md lists them); ``import annotation`` loads nothing."""
