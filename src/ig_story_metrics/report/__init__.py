"""Run reports: models, log events derived from them, terminal rendering."""
