"""The `ig-story-metrics` command (`python -m ig_story_metrics` too).

It starts building the Graph clients' TLS context in a worker thread before it imports the CLI:
loading the CA bundle takes 30 to 40 ms, during which OpenSSL releases the interpreter, and the
CLI's own imports take about 0.3 s, so the first client finds it ready (graph/pools.py).
"""

from __future__ import annotations

from typing import NoReturn

from ig_story_metrics.graph import pools


def main() -> NoReturn:
    pools.prepare_tls_context()
    from ig_story_metrics.cli import main as run_cli  # noqa: PLC0415 (after the thread starts)

    run_cli()


if __name__ == "__main__":
    main()
