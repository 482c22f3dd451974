"""Compatibility shim for the original system's habit: `python run_local.py NPI` / `--all`.

Runs the same job as `ig-story-metrics run`, with the same settings and exit codes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from ig_story_metrics.cli import app
from ig_story_metrics.logs import configure
from ig_story_metrics.settings import log_format

if __name__ == "__main__":
    configure(stream=sys.stderr, setting=log_format())
    app(args=["run", *sys.argv[1:]], prog_name="run_local.py")
