"""Cloud Function bodies: `fetch_story_metrics` (2nd gen, HTTP, Functions Framework).

A thin shim over the library, like the CLI: `prepare_run()` then `pipeline.run()`, the run report
as the answer, `logs.log_report()` for Cloud Logging.

Request: `POST` with the body `{"accounts": ["NPI", "LT"]}` for some accounts, or an empty body or
`{}` for every account in the accounts file (Cloud Scheduler sends `{}`). `"mode": "sweep"` (with
or without `accounts`) runs the sweep instead of the hourly run (the second scheduler job sends
`{"mode": "sweep"}`). `{"mode": "tokens"}` checks every token instead and renews those due (a
daily Scheduler job); its answer is the token report (200 all ok, 502 a token fails the check: its
log entries say why). Any other mode is a 400.

After the first hourly run of a UTC day (hour 0) the function audits the day that just ended and
logs one `audit` entry (`jobs/audit.daily_audit`): the figures of `ig-story-metrics audit`, once a
day, without a third scheduler job; a failing audit is logged (`audit_failed`) and changes nothing
in the answer.

Answer (always `application/json`): the run report, or `{"error": "..."}` when nothing ran.

| status | meaning                                                                                 |
| ------ | --------------------------------------------------------------------------------------- |
| 200    | the run finished and every account succeeded                                            |
| 502    | the run finished and at least one account failed (Graph API or storage); the others     |
|        | are stored all the same, and the report says which failed and why (an account without  |
|        | a token, or none of whose stories got a metric because of errors, has failed)           |
| 400    | bad request, nothing ran: not JSON, nested too deeply, a malformed chunked body, not an |
|        | object, a key other than `accounts` and `mode`, a mode other than "sweep", `accounts`   |
|        | not a non-empty list of strings, a                                                       |
|        | malformed or unknown account name                                                       |
| 405    | a method other than POST (a GET from a browser or a probe must not start a run)         |
| 413    | a body over 64 KiB (by Content-Length, or by what was actually sent)                    |
| 500    | the deployment is wrong, nothing ran: settings, accounts file, a malformed token,       |
|        | STORAGE_URL; or an unexpected error (the traceback is in the logs, not in the answer)   |

Every non-2xx status makes Cloud Scheduler record a failed attempt, so its retries and alerting see
a run in which an account failed. 502 (the upstream Graph API or the bucket let us down, the answer
is a complete report) is told apart from 500 (the function itself could not run) so that a glance
at the status says whether there is a report to read. A retry re-runs every requested account:
the accounts that succeeded get one more snapshot, which the daily files keep as history.

Logs (JSON lines on stdout, see `ig_story_metrics.logs`): the run's entries from `log_report()`;
a refused request is a WARNING (`event` `bad_request`) when it is the caller's mistake and an ERROR
(`config_error`) when it is the deployment's; an unexpected error is an ERROR (`crash`) with its
traceback in `stack_trace`.

`main.py` re-exports these functions for the platform. No answer and no log line carries a token.
"""

from __future__ import annotations

import json
import logging

import flask
import functions_framework

from ig_story_metrics import logs
from ig_story_metrics.bodies import read_body
from ig_story_metrics.errors import ConfigError, Refused, StorageError
from ig_story_metrics.jobs import heap, hourly, sweep, tokens
from ig_story_metrics.jobs.audit import daily_audit
from ig_story_metrics.model import lazy
from ig_story_metrics.model.accounts import account_name_problem
from ig_story_metrics.redact import register_secrets, scrub
from ig_story_metrics.report.events import log_report
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.report.tokens import log_tokens
from ig_story_metrics.settings import RunConfig, Settings, load_accounts, load_settings, prepare_run

MAX_BODY = 64 * 1024
STATUS_OK = 200
STATUS_ACCOUNT_FAILED = 502
MODES = ("sweep", "tokens")  # no mode: the hourly run

logs.configure("json")  # functions always log JSON lines, whatever LOG_FORMAT says
log = logging.getLogger("ig_story_metrics.function")
lazy.load()  # an instance imports Polars as it starts, not in its first request (model/lazy.py)
heap.settle()  # the collector set for runs (jobs/heap.py); what the imports made is frozen


@functions_framework.http
def fetch_story_metrics(request: flask.Request) -> flask.Response:
    """One hourly run (or sweep) for the accounts in the body (all when none); the run report."""
    if request.method != "POST":
        return refuse(request, Refused(405, f"method {request.method} not allowed: use POST"))
    try:
        body = read_body(request, MAX_BODY)
        names = parse_body(body)
        mode = parse_mode(body)
        if mode == "tokens":  # not a capture: the daily token check
            return tokens_mode()
        job = sweep.run if mode == "sweep" else hourly.run
        config = prepare(names)
        register_secrets(t.get_secret_value() for t in config.tokens.values())
        report = job(config.settings, config.accounts, config.tokens)
    except Refused as exc:
        return refuse(request, exc)
    except StorageError as exc:
        return refuse(request, Refused(500, str(exc)))
    except Exception:
        log.exception("the run crashed", extra={"event": "crash", "status": 500})
        return answer(500, {"error": "internal error; the function's logs have the details"})
    log_report(report)
    audit_after(config.settings, report)
    return answer(STATUS_OK if report.ok else STATUS_ACCOUNT_FAILED, report.to_json())


def audit_after(settings: Settings, report: RunReport) -> None:
    """The daily `audit` entry after the day's first hourly run; its failure is only logged."""
    try:
        with hourly.lake_for(settings) as lake:
            daily_audit(lake, report)
    except Exception:
        log.exception("the daily audit failed", extra={"event": "audit_failed"})


def tokens_mode() -> flask.Response:
    """`{"mode": "tokens"}`: check every token, renew those due (daily, from Cloud Scheduler)."""
    try:
        settings = load_settings()
        accounts = list(load_accounts(settings.accounts_file).values())
        report = tokens.check(settings, accounts, renew=True)
    except ConfigError as exc:
        raise Refused(exc.http_status, str(exc)) from None
    log_tokens(report)
    return answer(STATUS_OK if report.ok else STATUS_ACCOUNT_FAILED, report.to_json())


def parse_body(body: bytes) -> list[str]:
    """The account names a body asks for; [] means every account. 400 for anything else."""
    if not body.strip():
        return []
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, 'body is not JSON: send {"accounts": ["NPI"]}, or {} for all') from None
    except RecursionError:
        raise Refused(400, 'body is nested too deeply: send {"accounts": ["NPI"]}') from None
    if not isinstance(data, dict):
        raise Refused(400, 'body must be a JSON object: {"accounts": ["NPI"]}, or {} for all')
    unknown = sorted(set(data) - {"accounts", "mode"})
    if unknown:
        raise Refused(
            400, f"unknown key(s) {', '.join(map(short, unknown))}: only 'accounts' and 'mode'"
        )
    if "accounts" not in data:
        return []
    names = data["accounts"]
    if not isinstance(names, list) or not names:
        raise Refused(400, '"accounts" must be a non-empty list of names (omit it for all)')
    for name in names:
        if not isinstance(name, str):
            raise Refused(400, f'"accounts" must hold strings, not {short(name)}')
        problem = account_name_problem(name)
        if problem:
            raise Refused(400, f"invalid account name {short(name)}: {problem}")
    return names


def parse_mode(body: bytes) -> str:
    """The job a body asks for: "sweep", "tokens", or "hourly" when it names no mode (400 for
    another).
    Call it after `parse_body`, which refuses a body that is not a JSON object."""
    data = json.loads(body) if body.strip() else {}
    if "mode" not in data:
        return "hourly"
    mode = data["mode"]
    if mode not in MODES:
        raise Refused(
            400,
            f'unknown mode {short(mode)}: use {{"mode": "sweep"}}, {{"mode": "tokens"}}, or none',
        )
    if mode == "tokens" and set(data) != {"mode"}:
        others = ", ".join(map(short, sorted(set(data) - {"mode"})))
        raise Refused(400, f'{{"mode": "tokens"}} takes no other key ({others})')
    return str(mode)


def prepare(names: list[str]) -> RunConfig:
    """`prepare_run()`; its errors say by their class whose fault they are: a request naming an
    unknown account (`CallerError`, 400) or a deployment whose settings are wrong (500)."""
    try:
        return prepare_run(names, all_accounts=not names)
    except ConfigError as exc:
        raise Refused(exc.http_status, str(exc)) from None


def short(value: object, limit: int = 40) -> str:
    """A value for an error message, cut to `limit` characters (a body can be 64 KiB)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse(request: flask.Request, refused: Refused) -> flask.Response:
    """Log why nothing ran (WARNING for the caller's mistake, ERROR for the deployment's) and say so."""
    log.log(
        logging.WARNING if refused.status < 500 else logging.ERROR,
        "request refused (%d): %s",
        refused.status,
        refused.message,
        extra={
            "event": "bad_request" if refused.status < 500 else "config_error",
            "status": refused.status,
            "method": request.method,
        },
    )
    response = answer(refused.status, {"error": refused.message})
    if refused.status == 405:
        response.headers["Allow"] = "POST"
    return response


def answer(status: int, payload: str | dict[str, str]) -> flask.Response:
    """A JSON response, scrubbed of anything that looks like a token (scrubbing keeps JSON valid)."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return flask.Response(scrub(text) + "\n", status=status, mimetype="application/json")
