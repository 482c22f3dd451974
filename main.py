"""The Cloud Functions, as the platform finds them: `main.py` at the root of the deployed source.

`fetch_story_metrics` (HTTP, authenticated) is defined in `ig_story_metrics.functions`; see there.
`story_insights_webhook` (HTTP, public: Meta's signature is its lock) in `ig_story_metrics.receiver`.
Works from a checkout (`src/` is put on `sys.path` when `ig_story_metrics` is not importable) and
deployed (deploy.sh copies the package next to this file).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import ig_story_metrics  # noqa: F401  deployed: the package sits next to this file
except ModuleNotFoundError:  # a checkout: the package is under src/
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from ig_story_metrics.functions import fetch_story_metrics
from ig_story_metrics.receiver import story_insights_webhook

__all__ = ["fetch_story_metrics", "story_insights_webhook"]
