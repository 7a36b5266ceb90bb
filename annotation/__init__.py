"""The human side of APEX Arena: clip pool, battles, vote rules, vote store, ratings, Hub sync."""
