"""Reading run records into tables: rows over seeds, comparisons against a baseline, curves, the
generated reference page."""
