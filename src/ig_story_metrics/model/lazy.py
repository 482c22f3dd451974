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
_after: list[str] = []  # modules the entry point needs once the answers are in (load_with)


def load() -> ModuleType:
    """The polars module, imported if it is not yet, then the modules named by `load_with`."""
    if not _loaded:
        _loaded.append(importlib.import_module("polars"))
    for name in _after:
        importlib.import_module(name)  # at once if already imported
    return _loaded[0]


def load_with(*modules: str) -> None:
    """Have `load()` import these modules too: the entry point names what it needs once the
    answers are in (the CLI: the renderer of its table, with rich), so that they load beside
    the network wait rather than after the run."""
    _after.extend(m for m in modules if m not in _after)


class _Polars:
    """Reads every attribute from the polars module, importing it on the first."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_loaded[0] if _loaded else load(), name)

    def __repr__(self) -> str:
        return f"<polars, {'imported' if _loaded else 'not imported yet'}>"


pl: Any = _Polars()
