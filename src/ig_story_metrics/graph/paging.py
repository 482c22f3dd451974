"""Cursor pagination as a small object with explicit state: follows `paging.next` to the end,
strips secrets from the links Meta returns, refuses a repeated link and stops after `max_pages`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ig_story_metrics.graph.errors import BadResponse
from ig_story_metrics.redact import strip_secrets

MAX_PAGES = 100


@dataclass(slots=True)
class Pager:
    """The next path to ask for, and what has been asked already."""

    path: str | None
    max_pages: int = MAX_PAGES
    pages: int = 0
    _seen: set[str] = field(default_factory=set)

    def next_path(self) -> str | None:
        """The path of the next page, or None when the listing is complete."""
        if self.path is None:
            return None
        if self.path in self._seen:
            raise BadResponse("the Graph API repeated a paging.next link; stopping the listing")
        if self.pages >= self.max_pages:
            raise BadResponse(f"more than {self.max_pages} pages; stopping the listing")
        self._seen.add(self.path)
        return self.path

    def advance(self, body: Mapping[str, Any]) -> None:
        """Record a page that was read, and where the next one is."""
        self.pages += 1
        paging = body.get("paging")
        nxt = paging.get("next") if isinstance(paging, dict) else None
        if not isinstance(nxt, str) or not nxt:
            self.path = None
        else:
            self.path = strip_secrets(nxt).lstrip("/")
