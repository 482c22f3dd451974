"""Polars, imported when first used.

Importing Polars takes about 0.2 s of CPU, a fifth of a small hourly run. The run needs it only
once answers are in (to build and write the frames), so the modules on its path refer to Polars
through `pl` below, and the run starts `load()` in a worker thread while its first Graph calls
wait on the network. Whoever touches `pl` first imports Polars, or waits for the import under way
(the import system's own lock per module). Type checkers see the real module:

    if TYPE_CHECKING:
        import polars as pl
    else:
        from ig_story_metrics.model.lazy import pl
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_loaded: list[ModuleType] = []


def load() -> ModuleType:
    """The polars module, imported if it is not yet."""
    if not _loaded:
        _loaded.append(importlib.import_module("polars"))
    return _loaded[0]


class _Polars:
    """Reads every attribute from the polars module, importing it on the first."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_loaded[0] if _loaded else load(), name)

    def __repr__(self) -> str:
        return f"<polars, {'imported' if _loaded else 'not imported yet'}>"


pl: Any = _Polars()
