"""Meta's `story_insights` webhook, as the simulator sends it (graph-api.md §7).

When a story of the world expires (plus `delay`; Meta says about an hour), the sender POSTs a
signed delivery: `X-Hub-Signature-256: sha256=HMAC-SHA256(body, app secret)`, the legacy payload
(`impressions`, `reach`, `replies`, `exits`, `taps_forward`, `taps_back`: the story's final values),
`-1` for a metric below 5, one entry per account with the stories due since the last tick (batched).
Some deliveries are sent twice (`duplicate_rate`, reproducible by story id), as Meta may. A delivery
that fails (not 2xx, no answer) is sent again at the next tick, as Meta retries.

`tick(now)` sends what is due at `now` (the demo calls it on its virtual clock); `start(interval)`
ticks on the world's clock in a daemon thread (`ig-story-metrics simulate --webhook-url`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from ig_story_metrics.simulator.world import SimStory, World

Post = Callable[[bytes, Mapping[str, str]], int]  # body, headers -> HTTP status
BELOW_FIVE = 5


def legacy_values(story: SimStory) -> dict[str, int]:
    """The story's final values under the webhook's legacy names, -1 below 5."""
    final = story.metrics(story.expires_at)
    values = {
        "impressions": final["views"],
        "reach": final["reach"],
        "replies": final["replies"],
        "exits": final["taps_exit"],
        "taps_forward": final["taps_forward"],
        "taps_back": final["taps_back"],
    }
    return {k: (-1 if v < BELOW_FIVE else v) for k, v in values.items()}


def signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Signed `story_insights` deliveries for the stories of `world` as they expire."""

    def __init__(
        self,
        world: World,
        url: str,
        app_secret: str,
        *,
        delay: timedelta = timedelta(hours=1),
        duplicate_rate: float = 0.1,
        post: Post | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        self.world = world
        self.url = url
        self.app_secret = app_secret
        self.delay = delay
        self.duplicate_rate = duplicate_rate
        self.post = post or self._http_post
        self.since: datetime | None = None
        self.pending: list[bytes] = []  # failed deliveries, sent again at the next tick
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()

    def due(self, now: datetime) -> list[SimStory]:
        """The stories whose delivery falls in (last tick, now]."""
        since = self.since if self.since is not None else now
        start, end = since - self.delay, now - self.delay
        found = []
        for account in self.world.accounts:
            found += self.world.expired_between(account, start, end)
        return found

    def deliveries(self, stories: list[SimStory], now: datetime) -> list[bytes]:
        """One body per batch: an entry per account, a change per story; some twice."""
        entries: dict[str, list[dict[str, object]]] = {}
        for story in stories:
            value: dict[str, object] = {"media_id": story.id, **legacy_values(story)}
            entries.setdefault(story.ig_user_id, []).append(
                {"field": "story_insights", "value": value}
            )
        if not entries:
            return []
        body = json.dumps(
            {
                "object": "instagram",
                "entry": [
                    {"id": user, "time": int(now.timestamp()), "changes": changes}
                    for user, changes in entries.items()
                ],
            }
        ).encode()
        twice = random.Random(f"dup:{stories[0].id}").random() < self.duplicate_rate
        return [body, body] if twice else [body]

    def tick(self, now: datetime) -> int:
        """Send what is due at `now` (and what failed before); how many deliveries went out."""
        bodies = [*self.pending, *self.deliveries(self.due(now), now)]
        self.since = now
        self.pending = []
        sent = 0
        for body in bodies:
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature(body, self.app_secret),
            }
            status = self.post(body, headers)
            if 200 <= status < 300:
                sent += 1
            else:
                self.failed += 1
                self.pending.append(body)
        self.sent += sent
        return sent

    def _http_post(self, body: bytes, headers: Mapping[str, str]) -> int:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at start
            self.url, data=body, headers=dict(headers), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our URL
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def start(self, interval: float = 30.0) -> threading.Thread:
        """Tick on the world's clock every `interval` seconds until `stop()`."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.tick(self.world.clock())

        self.since = self.world.clock()
        thread = threading.Thread(target=loop, name="webhook-sender", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
