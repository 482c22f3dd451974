"""The HTML report: one self-contained page (plotly.js, data and pictures inline; opens offline).

    render(report) -> str

Charts are drawn by plotly.js, which the `plotly` package ships (`plotly.offline.get_plotlyjs()`),
so nothing is fetched when the page opens. Every chart is a JSON figure in one data block; the
page's script draws them and, after each one is on the page, sets `body[data-charts-drawn]` to the
number drawn so far (`data-charts-expected` holds the total): a headless browser reads both.
Every text that comes from the lake (captions, names) is escaped.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl
from plotly.offline import get_plotlyjs

from ig_story_metrics.model.coverage import DayCoverage
from ig_story_metrics.model.stories import Summary

Figure = dict[str, Any]
SYMBOLS = {"hourly": "circle", "sweep": "diamond"}


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """An archived picture, inlined as a data URL."""

    content_type: str
    data: bytes

    def data_url(self) -> str:
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True, slots=True)
class AccountSection:
    """What one account's part of the page shows."""

    summary: Summary
    finals: pl.DataFrame
    curves: pl.DataFrame
    per_day: list[tuple[date, int]]
    best: pl.DataFrame
    worst: pl.DataFrame
    thumbnails: dict[str, Thumbnail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoriesReport:
    """The page's data."""

    generated_at: datetime
    first_day: date
    last_day: date
    storage_url: str
    accounts: list[AccountSection]
    coverage: list[DayCoverage]
    final_share: float | None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def _label(row: dict[str, Any]) -> str:
    posted: datetime | None = row["posted_at"]
    when = "unknown time" if posted is None else f"{posted:%m-%d %H:%M}"
    return f"{when} · {row['story_id']}"


def _layout(title: str, x: str, y: str, **more: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "height": 360,
        **more,
    }


def curve_figure(section: AccountSection, metric: str) -> Figure:
    """`metric` against story age, one line per story; hourly points round, sweep points diamonds."""
    labels = {row["story_id"]: _label(row) for row in section.finals.iter_rows(named=True)}
    traces = []
    for (story_id,), points in section.curves.group_by("story_id", maintain_order=True):
        captures = points["capture"].to_list()
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _e(labels.get(str(story_id), story_id)),
                "x": points["story_age_hours"].to_list(),
                "y": points[metric].to_list(),
                "marker": {
                    "symbol": [SYMBOLS.get(c, "circle") for c in captures],
                    "size": [10 if c == "sweep" else 6 for c in captures],
                },
                "hovertemplate": "%{y} at %{x:.2f} h<extra>%{fullData.name}</extra>",
            }
        )
    title = f"{metric.capitalize()} by story age (● hourly snapshot, ◆ sweep)"
    layout = _layout(title, "story age (hours)", metric, showlegend=len(traces) <= 12)
    layout["xaxis"]["range"] = [0, 24.5]
    return {"data": traces, "layout": layout}


def exit_figure(section: AccountSection) -> Figure:
    """The exit rate (taps_exit / views) of every frame, in posting order."""
    rows = list(section.finals.iter_rows(named=True))
    trace = {
        "type": "bar",
        "x": [_e(_label(r)) for r in rows],
        "y": [r["exit_rate"] for r in rows],
        "hovertemplate": "%{x}<br>exit rate %{y:.1%}<extra></extra>",
    }
    layout = _layout("Exit rate per frame (taps_exit / views)", "frame (by posting)", "exit rate")
    layout["yaxis"]["tickformat"] = ".0%"
    layout["xaxis"]["showticklabels"] = len(rows) <= 16  # beyond, the labels overlap: hover instead
    return {"data": [trace], "layout": layout}


def per_day_figure(section: AccountSection) -> Figure:
    """Stories posted per UTC day."""
    trace = {
        "type": "bar",
        "x": [d.isoformat() for d, _ in section.per_day],
        "y": [n for _, n in section.per_day],
    }
    layout = _layout("Stories per day (UTC, by posting)", "day", "stories")
    layout["xaxis"]["type"] = "category"
    return {"data": [trace], "layout": layout}


def _summary_html(s: Summary) -> str:
    cells = [
        ("stories", _num(s.stories)),
        ("snapshots", _num(s.snapshots)),
        ("views (total)", _num(s.views_total)),
        ("views (median)", _num(s.views_median, 1)),
        ("reach (total)", _num(s.reach_total)),
        ("reach (median)", _num(s.reach_median, 1)),
        ("replies", _num(s.replies)),
        ("shares", _num(s.shares)),
        ("link clicks", _num(s.link_clicks)),
        ("follows", _num(s.follows)),
        ("completion (1 - taps_exit / views)", _pct(s.completion)),
    ]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in cells)
    return f'<dl class="summary">{items}</dl>'


def _card(row: dict[str, Any], thumbnails: dict[str, Thumbnail]) -> str:
    thumb = thumbnails.get(row["story_id"])
    picture = (
        f'<img alt="story {_e(row["story_id"])}" src="{thumb.data_url()}">'
        if thumb
        else '<div class="nopic">no archived picture</div>'
    )
    caption = _e(row["caption"] or "")
    return (
        f'<figure class="card">{picture}<figcaption><b>{_e(_label(row))}</b><br>'
        f"views {_num(row['views'])} · reach {_num(row['reach'])} · "
        f"completion {_pct(row['completion'])}<br><i>{caption}</i></figcaption></figure>"
    )


def _cards(title: str, frame: pl.DataFrame, thumbnails: dict[str, Thumbnail]) -> str:
    cards = "".join(_card(r, thumbnails) for r in frame.iter_rows(named=True)) or "<p>none</p>"
    return f'<h3>{_e(title)}</h3><div class="cards">{cards}</div>'


def _coverage_html(rows: list[DayCoverage]) -> str:
    head = (
        "<tr><th>day</th><th>stories seen</th><th>snapshots / story (min · median · max)</th>"
        "<th>largest gap (min)</th><th>expired</th><th>finals caught</th>"
        "<th>missing hourly runs</th><th>first seen late</th><th>without final row</th></tr>"
    )
    body = "".join(
        f"<tr><td>{c.day}</td><td>{c.stories_seen}</td><td>{_num(c.snapshots_min)} · "
        f"{_num(c.snapshots_median, 1)} · {_num(c.snapshots_max)}</td>"
        f"<td>{_num(c.largest_gap_minutes, 1)}</td><td>{c.expired}</td><td>{c.finals_caught}</td>"
        f"<td>{len(c.missing_hours)}</td><td>{len(c.late_first_seen)}</td>"
        f"<td>{len(c.missing_final_rows)}</td></tr>"
        for c in rows
    )
    return f'<h3>Coverage (audit)</h3><table class="coverage">{head}{body}</table>'


def _section_html(
    index: int, section: AccountSection, coverage: list[DayCoverage], charts: list[Figure]
) -> str:
    name = section.summary.account
    figures = [
        curve_figure(section, "views"),
        curve_figure(section, "reach"),
        exit_figure(section),
        per_day_figure(section),
    ]
    divs = []
    for figure in figures:
        chart_id = f"chart-{index}-{len(charts)}"
        charts.append({"id": chart_id, "figure": figure})
        divs.append(f'<div class="chart" id="{chart_id}"></div>')
    return (
        f'<section id="account-{_e(name)}"><h2>{_e(name)}</h2>'
        f"{_summary_html(section.summary)}{''.join(divs)}"
        f"{_cards('Best stories (most views)', section.best, section.thumbnails)}"
        f"{_cards('Worst stories (fewest views)', section.worst, section.thumbnails)}"
        f"{_coverage_html([c for c in coverage if c.account == name])}</section>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin-bottom:4px}.meta{color:#666;margin-top:0}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:16px;margin:20px 0}
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px}
dl.summary div{background:#f3f3f7;border-radius:6px;padding:8px}
dt{font-size:12px;color:#666}dd{margin:0;font-size:20px;font-weight:600}
.chart{min-height:360px}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{width:220px;margin:0;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:13px}
.card img{width:100%;max-height:200px;object-fit:cover;border-radius:4px}.nopic{height:120px;background:#eee;color:#888;
display:flex;align-items:center;justify-content:center;border-radius:4px}
table.coverage{border-collapse:collapse;font-size:13px}
table.coverage td,table.coverage th{border:1px solid #ddd;padding:4px 8px;text-align:right}
"""

SCRIPT = """
(function () {
  var charts = JSON.parse(document.getElementById("chart-data").textContent);
  var body = document.body, drawn = 0;
  body.dataset.chartsExpected = String(charts.length);
  body.dataset.chartsDrawn = "0";
  charts.forEach(function (chart) {
    var el = document.getElementById(chart.id);
    var config = {displaylogo: false, responsive: true};
    Plotly.newPlot(el, chart.figure.data, chart.figure.layout, config).then(function () {
      if (el.querySelector(".main-svg")) { drawn += 1; body.dataset.chartsDrawn = String(drawn); }
    }, function (err) { body.dataset.chartError = String(err); });
  });
})();
"""


def _json_for_script(value: object) -> str:
    """JSON that cannot end its <script> element early."""
    text = json.dumps(value, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _clean(value: Any) -> Any:
    """NaN and infinities (never expected: nulls stay None) as null, so the JSON stays valid."""
    if isinstance(value, float) and value != value:  # noqa: PLR0124 (NaN test)
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def render(report: StoriesReport) -> str:
    """The whole page as one string."""
    charts: list[Figure] = []
    sections = "".join(
        _section_html(i, s, report.coverage, charts) for i, s in enumerate(report.accounts)
    )
    if not report.accounts:
        sections = "<section><p>No stories were stored in these days.</p></section>"
    window = f"{report.first_day} to {report.last_day} (UTC)"
    meta = (
        f"{_e(window)} · {len(report.accounts)} account(s) · lake {_e(report.storage_url)} · "
        f"generated {report.generated_at:%Y-%m-%d %H:%M} UTC · last snapshot within 10 minutes "
        f"of expiry: {_pct(report.final_share)} of expired stories"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Instagram stories {_e(window)}</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f'<h1>Instagram stories</h1><p class="meta">{meta}</p>{sections}'
        f'<script type="application/json" id="chart-data">{_json_for_script(_clean(charts))}'
        f"</script><script>{SCRIPT}</script></body></html>"
    )
