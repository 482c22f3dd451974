"""The Cloud Function `story_insights_webhook`: Meta's `story_insights` webhook receiver.

Public (deployed `--allow-unauthenticated`): the signature is its lock (graph-api.md §7).

| request                                   | answer                                                  |
| ----------------------------------------- | ------------------------------------------------------- |
| GET, `hub.mode=subscribe`, right token    | 200, the `hub.challenge` as the body (text/plain)       |
| GET otherwise                             | 403                                                     |
| POST over 1 MiB                           | 413, nothing stored                                     |
| POST whose `X-Hub-Signature-256` is       | 403, nothing stored (checked on the raw body, before    |
| absent, malformed or wrong                | any parsing, in constant time)                          |
| POST signed                               | stored as it came, write-once (`jobs/webhooks.py`), then|
|                                           | 200; a body that is not the expected JSON is stored too |
|                                           | (under `_unknown`), 200 and a WARNING                   |
| POST signed, storing failed               | 503: Meta retries for up to 36 h                        |
| settings missing (IG_APP_SECRET, ...)     | 500 and an ERROR: the deployment is wrong               |
| another method                            | 405                                                     |

No answer and no log line carries the app secret or the verify token.
"""

from __future__ import annotations

import json
import logging

import flask
import functions_framework

from ig_story_metrics import logs
from ig_story_metrics.bodies import read_body
from ig_story_metrics.clock import Deadline, utc_now
from ig_story_metrics.errors import ConfigError, Refused, StorageError
from ig_story_metrics.jobs.hourly import lake_for
from ig_story_metrics.jobs.webhooks import store_delivery
from ig_story_metrics.model.webhook import SIGNATURE_HEADER, handshake_answer, signature_valid
from ig_story_metrics.redact import register_secrets, scrub
from ig_story_metrics.settings import Settings, load_accounts, load_settings

MAX_BODY = 1024 * 1024
STORE_BUDGET_SECONDS = 20.0  # answer quickly: Meta may disable a slow endpoint

logs.configure("json")
log = logging.getLogger("ig_story_metrics.webhook")


@functions_framework.http
def story_insights_webhook(request: flask.Request) -> flask.Response:
    """The handshake (GET) or one delivery (POST); see the module's table."""
    try:
        if request.method == "GET":
            return handshake(request)
        return deliver(request)
    except Refused as exc:
        level = logging.WARNING if exc.status < 500 else logging.ERROR
        log.log(
            level,
            "webhook refused (%d): %s",
            exc.status,
            exc.message,
            extra={"event": "webhook_refused", "status": exc.status},
        )
        response = reply(exc.status, {"error": exc.message})
        if exc.status == 405:
            response.headers["Allow"] = "GET, POST"
        return response
    except Exception:
        log.exception("the webhook receiver crashed", extra={"event": "crash", "status": 500})
        return reply(500, {"error": "internal error; the function's logs have the details"})


def settings() -> Settings:
    try:
        loaded = load_settings()
    except ConfigError as exc:
        raise Refused(500, str(exc)) from None
    register_secrets(
        s.get_secret_value() for s in (loaded.app_secret, loaded.webhook_verify_token) if s
    )
    return loaded


def handshake(request: flask.Request) -> flask.Response:
    """Meta's subscription check: the challenge back when the verify token matches, else 403."""
    config = settings()
    token = config.webhook_verify_token
    if token is None:
        raise Refused(500, "IG_WEBHOOK_VERIFY_TOKEN is not set: the handshake cannot be checked")
    challenge = handshake_answer(request.args.to_dict(), token.get_secret_value())
    if challenge is None:
        raise Refused(403, "handshake refused: wrong hub.mode or hub.verify_token")
    log.info("webhook handshake answered", extra={"event": "webhook_handshake"})
    return flask.Response(challenge, status=200, mimetype="text/plain")


def deliver(request: flask.Request) -> flask.Response:
    """Verify, store (before answering), answer."""
    if request.method != "POST":
        raise Refused(405, f"method {request.method} not allowed: GET or POST")
    body = read_body(request, MAX_BODY)
    config = settings()
    if config.app_secret is None:
        raise Refused(500, "IG_APP_SECRET is not set: deliveries cannot be verified")
    if not signature_valid(
        body, request.headers.get(SIGNATURE_HEADER), config.app_secret.get_secret_value()
    ):
        raise Refused(403, f"{SIGNATURE_HEADER} absent, malformed or wrong: nothing stored")
    try:
        accounts = list(load_accounts(config.accounts_file).values())
    except ConfigError as exc:
        raise Refused(500, str(exc)) from None
    try:
        with lake_for(config) as lake:
            stored = store_delivery(
                lake, accounts, body, utc_now(), deadline=Deadline(STORE_BUDGET_SECONDS)
            )
    except StorageError as exc:
        raise Refused(503, f"the delivery could not be stored, retry later: {exc}") from None
    extra = {"event": "webhook_stored", "stored": len(stored.keys), "new": stored.created}
    if not stored.expected:
        log.warning(
            "a signed delivery is not the expected JSON: stored as it came under %s",
            stored.keys[0],
            extra=extra,
        )
    else:
        log.info("webhook delivery stored", extra=extra)
    return reply(200, {"stored": len(stored.keys), "new": stored.created})


def reply(status: int, payload: dict[str, object]) -> flask.Response:
    return flask.Response(
        scrub(json.dumps(payload)) + "\n", status=status, mimetype="application/json"
    )
