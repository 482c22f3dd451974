"""`python -m ig_story_metrics` is the `ig-story-metrics` command."""

from ig_story_metrics.cli import main

main()
