"""deploy.sh deploys the story_insights webhook receiver as a second, public function with its
secrets from Secret Manager (the fake gcloud of tests/test_deployment.py: the real CLI and Secret
Manager cannot run here)."""

from __future__ import annotations

from .test_deployment import FakeCloud, cloud, flags, positionals, printed_commands

__all__ = ["cloud"]  # the fixture, shared with tests/test_deployment.py

WEBHOOK = {"WEBHOOK_VERIFY_SECRET_NAME": "ig-webhook-verify", "APP_SECRET_NAME": "ig-app-secret"}


def test_receiver_is_a_public_function_with_its_secrets(cloud: FakeCloud) -> None:
    """Entry point story_insights_webhook, --allow-unauthenticated, the app secret and the verify
    token from Secret Manager, the runtime may read the verify token; the capture stays private."""
    result = cloud.deploy("production", **WEBHOOK)
    hook = cloud.one_call("functions", "deploy", "ig-story-metrics-webhook-prod")
    assert hook["entry-point"] == "story_insights_webhook"
    assert "allow-unauthenticated" in hook
    assert "no-allow-unauthenticated" not in hook
    assert hook["set-secrets"] == (
        "IG_APP_SECRET=ig-app-secret:latest,IG_WEBHOOK_VERIFY_TOKEN=ig-webhook-verify:latest"
    )
    assert "STORAGE_URL=gs://" in hook["set-env-vars"]
    fetcher = cloud.one_call("functions", "deploy", "ig-story-metrics-fetcher-prod")
    assert "no-allow-unauthenticated" in fetcher
    grants = [flags(c) for c in cloud.calls_of("secrets", "add-iam-policy-binding")]
    assert any(
        g["role"] == "roles/secretmanager.secretAccessor"
        for g, c in zip(grants, cloud.calls_of("secrets", "add-iam-policy-binding"), strict=True)
        if "ig-webhook-verify" in positionals(c)
    )
    assert "webhook callback URL" in result.stdout


def test_dry_run_shows_the_receiver(cloud: FakeCloud) -> None:
    """--dry-run prints the receiver's deploy and calls nothing."""
    result = cloud.deploy("staging", "--dry-run", **WEBHOOK)
    assert cloud.calls() == []
    printed = {
        " ".join(positionals(argv)[:3]): flags(argv) for argv in printed_commands(result.stdout)
    }
    hook = printed["functions deploy ig-story-metrics-webhook-staging"]
    assert "allow-unauthenticated" in hook


def test_without_the_verify_secret_no_receiver(cloud: FakeCloud) -> None:
    """Opt-in: without WEBHOOK_VERIFY_SECRET_NAME only the capture function is deployed."""
    result = cloud.deploy("production")
    assert cloud.calls_of("functions", "deploy", "ig-story-metrics-webhook-prod") == []
    assert "webhook receiver not deployed" in result.stdout


def test_receiver_without_the_app_secret_is_refused(cloud: FakeCloud) -> None:
    """The receiver cannot check signatures without the app secret: exit 2 before any call."""
    result = cloud.run("deploy.sh", "production", WEBHOOK_VERIFY_SECRET_NAME="ig-webhook-verify")
    assert result.returncode == 2
    assert "APP_SECRET_NAME" in result.stderr
    assert cloud.calls() == []
