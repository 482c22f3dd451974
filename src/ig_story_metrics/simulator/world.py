"""The simulated Instagram world: accounts that post stories, stories that live 24 hours, and
metrics that grow with a story's age. Everything is a pure function of (seed, account, time), so two
simulators with the same seed agree, and tests can ask for the ground truth at any moment.

Each account posts on an endless hourly timeline: for hour `h` (hours since the Unix epoch) a seeded
generator decides how many stories were posted that hour, at which minute, and how large each story's
audience will be after 24 hours. The live stories at `now` are those posted in the last 24 hours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

LIFETIME = timedelta(hours=24)

# The first user's five accounts; ids look like real IG professional account ids.
SEED_ACCOUNTS: dict[str, str] = {
    "NPI": "17841400000000001",
    "LT": "17841400000000002",
    "MD": "17841400000000003",
    "RE": "17841400000000004",
    "SML": "17841400000000005",
}
# Stories posted per hour, on average: NPI keeps about 16 stories live, SML about 3.
SEED_RATES: dict[str, float] = {"NPI": 0.7, "LT": 0.4, "MD": 0.3, "RE": 0.2, "SML": 0.12}
DEFAULT_RATE = 0.3
DAY_SECONDS = 86400
CAPTIONS = (
    None,
    "New drop",
    "Behind the scenes",
    "Swipe up for the full story",
    "Nueva colección 🌮",
    "Flash sale — 24h only ⚡",
    "Q&A: ask us anything",
    None,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SimStory:
    """One simulated story and the parameters its metrics grow from."""

    id: str
    account: str
    ig_user_id: str
    posted_at: datetime
    media_type: str
    caption: str | None
    audience: int  # reach after 24 hours
    views_ratio: float
    nav_ratio: float
    nav_split: tuple[float, float, float]  # tap_forward, tap_back, tap_exit; swipe_forward = rest
    reply_rate: float
    share_rate: float
    profile_rates: tuple[float, ...]  # bio_link_clicked, call, direction, email, other, text

    @property
    def expires_at(self) -> datetime:
        return self.posted_at + LIFETIME

    @property
    def permalink(self) -> str:
        return f"https://www.instagram.com/stories/{self.account.lower()}/{self.id}/"

    def listing(self) -> dict[str, object]:
        """The story as `GET /{ig-user-id}/stories?fields=...` shows it."""
        item: dict[str, object] = {
            "id": self.id,
            "media_type": self.media_type,
            "media_product_type": "STORY",
            "permalink": self.permalink,
            "timestamp": self.posted_at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "owner": {"id": self.ig_user_id},
            "username": self.account.lower(),
        }
        if self.caption is not None:
            item["caption"] = self.caption
        return item

    @property
    def shared_to_facebook(self) -> bool:
        """Whether the story was also shared to Facebook (only then has it `facebook_views`)."""
        return int(self.id) % 3 == 0

    def extra_metrics(self, at: datetime, views: int | None = None) -> dict[str, int]:
        """The opt-in metrics at `at`: `total_views` always, `facebook_views` when shared
        (`views`: the story's views at `at`, when the caller has them already)."""
        views = self.metrics(at)["views"] if views is None else views
        extra = {"total_views": views + math.floor(views * 0.08)}
        if self.shared_to_facebook:
            extra["facebook_views"] = math.floor(views * 0.15)
        return extra

    def metrics(self, at: datetime) -> dict[str, int]:
        """Lifetime-to-date values at `at`, by column name (breakdown parts included)."""
        age = max((at - self.posted_at).total_seconds() / 3600, 0.0)
        growth = (1 - math.exp(-min(age, 24.0) / 3)) / (1 - math.exp(-8))
        reach = math.floor(self.audience * growth)
        views = math.floor(reach * self.views_ratio)
        navigation = math.floor(views * self.nav_ratio)
        forward, back, exits = (math.floor(navigation * share) for share in self.nav_split)
        replies = math.floor(reach * self.reply_rate)
        shares = math.floor(reach * self.share_rate)
        names = ("bio_link_clicked", "call", "direction", "email", "other", "text")
        profile = {
            f"profile_activity_{name}": math.floor(reach * rate)
            for name, rate in zip(names, self.profile_rates, strict=True)
        }
        return {
            "views": views,
            "reach": reach,
            "replies": replies,
            "shares": shares,
            "total_interactions": replies + shares,
            "follows": math.floor(reach * 0.004),
            "profile_visits": math.floor(reach * 0.03),
            "reposts": math.floor(reach * 0.002),
            "link_clicks": math.floor(reach * self.share_rate * 0.5),
            "navigation": navigation,
            "taps_forward": forward,
            "taps_back": back,
            "taps_exit": exits,
            "swipe_forward": navigation - forward - back - exits,
            "profile_activity": sum(profile.values()),
            **profile,
        }


class World:
    """The accounts and their stories, as a function of time."""

    def __init__(
        self,
        seed: int = 0,
        accounts: Mapping[str, str] | None = None,
        rates: Mapping[str, float] | None = None,
        clock: Callable[[], datetime] = utc_now,
        live: Mapping[str, int] | None = None,
    ) -> None:
        """`live` gives accounts that keep exactly that many stories live at every moment (posted
        on a fixed daily grid) instead of posting at a random `rates` pace."""
        self.seed = seed
        self.accounts = dict(SEED_ACCOUNTS if accounts is None else accounts)
        self.rates = dict(SEED_RATES if rates is None else rates)
        self.live = dict(live or {})
        self.clock = clock
        self._by_user = {uid: name for name, uid in self.accounts.items()}
        self._index = {name: i for i, name in enumerate(self.accounts, start=1)}
        self._by_index = {i: name for name, i in self._index.items()}

    def account_for(self, ig_user_id: str) -> str | None:
        return self._by_user.get(ig_user_id)

    def live_stories(self, account: str, at: datetime | None = None) -> list[SimStory]:
        """Stories live at `at`, newest first (the order the real edge uses)."""
        now = at or self.clock()
        last = math.floor(now.timestamp() / 3600)
        stories = [
            story
            for hour in range(last - 24, last + 1)
            for story in self._posted(account, hour)
            if story.posted_at <= now < story.expires_at
        ]
        return sorted(stories, key=lambda s: s.posted_at, reverse=True)

    def expired_between(self, account: str, start: datetime, end: datetime) -> list[SimStory]:
        """Stories of `account` that expired in (start, end], oldest first (the webhook's)."""
        first = math.floor((start - LIFETIME).timestamp() / 3600)
        last = math.floor((end - LIFETIME).timestamp() / 3600)
        stories = [
            story
            for hour in range(first, last + 1)
            for story in self._posted(account, hour)
            if start < story.expires_at <= end
        ]
        return sorted(stories, key=lambda s: s.expires_at)

    @classmethod
    def fleet(
        cls,
        accounts: int,
        stories: int,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
    ) -> World:
        """The seed accounts plus `accounts` synthetic ones (`fleet_names`), each with exactly
        `stories` live stories at every moment (benchmarks of large fleets)."""
        fleet = fleet_accounts(accounts)
        return cls(
            seed=seed,
            accounts={**SEED_ACCOUNTS, **fleet},
            clock=clock,
            live=dict.fromkeys(fleet, stories),
        )

    def story(self, story_id: str) -> SimStory | None:
        """Any story ever posted (live or expired), by id; None for an id that never existed."""
        if not story_id.isdigit():
            return None
        if len(story_id) == 15 and story_id.startswith("18"):
            index, hour, k = int(story_id[2:4]), int(story_id[4:13]), int(story_id[13:])
        elif len(story_id) == 19 and story_id.startswith("19"):
            index, hour, k = int(story_id[2:8]), int(story_id[8:17]), int(story_id[17:])
        else:
            return None
        account = self._by_index.get(index)
        if account is None:
            return None
        posted = self._posted(account, hour)
        return posted[k] if k < len(posted) else None

    def _posted(self, account: str, hour: int) -> tuple[SimStory, ...]:
        return _posted_in_hour(
            self.seed,
            account,
            self.accounts[account],
            self._index[account],
            self.rates.get(account, DEFAULT_RATE),
            hour,
            self.live.get(account, 0),
        )


def fleet_accounts(count: int) -> dict[str, str]:
    """`count` synthetic accounts by name (`fleet0001`, ...) and ig_user_id."""
    return {f"fleet{i:04d}": f"1784150{i:010d}" for i in range(1, count + 1)}


def _grid_seconds(hour: int, live: int) -> list[float]:
    """Posting moments (epoch seconds) within `hour` of an account keeping `live` stories live:
    story j of each day at j/live of the day, so every 24-hour window holds exactly `live`."""
    day, start = divmod(hour * 3600, DAY_SECONDS)
    offsets = (j * DAY_SECONDS // live for j in range(live))
    return [day * DAY_SECONDS + o for o in offsets if start <= o < start + 3600]


@lru_cache(maxsize=65536)
def _posted_in_hour(
    seed: int, account: str, ig_user_id: str, index: int, rate: float, hour: int, live: int = 0
) -> tuple[SimStory, ...]:
    rng = random.Random(f"{seed}:{account}:{hour}")
    grid = _grid_seconds(hour, live) if live else None
    count = len(grid) if grid is not None else math.floor(rate + rng.random())
    stories = []
    for k in range(count):
        minute = rng.uniform(0, 3599.0)
        if grid is not None:
            minute = grid[k] - hour * 3600
        small = rng.random() < 0.12
        audience = rng.randint(1, 12) if small else math.floor(math.exp(rng.uniform(3.0, 8.5)))
        forward = rng.uniform(0.5, 0.7)  # the three shares stay below 1: swipe_forward >= 0
        back = rng.uniform(0.04, 0.1)
        exits = rng.uniform(0.08, 0.18)
        stories.append(
            SimStory(
                id=f"18{index:02d}{hour:09d}{k:02d}"
                if index < 100
                else f"19{index:06d}{hour:09d}{k:02d}",
                account=account,
                ig_user_id=ig_user_id,
                posted_at=datetime.fromtimestamp(hour * 3600 + minute, UTC).replace(microsecond=0),
                media_type=rng.choice(("IMAGE", "VIDEO")),
                caption=rng.choice(CAPTIONS),
                audience=audience,
                views_ratio=rng.uniform(1.05, 1.6),
                nav_ratio=rng.uniform(0.7, 1.2),
                nav_split=(forward, back, exits),
                reply_rate=rng.uniform(0.0, 0.02),
                share_rate=rng.uniform(0.0, 0.015),
                profile_rates=tuple(rng.choice((0.0, rng.uniform(0.0, 0.01))) for _ in range(6)),
            )
        )
    return tuple(stories)
