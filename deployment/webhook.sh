# shellcheck shell=bash
# The story_insights webhook receiver: a second Cloud Function (entry point story_insights_webhook),
# public (--allow-unauthenticated): Meta calls it without a Google identity, so the signature of
# every delivery (HMAC-SHA256 with the app secret) is its lock. Sourced by deploy.sh.
#
# Opt-in, because it needs two secrets in Secret Manager and works with Facebook Login only:
#   WEBHOOK_VERIFY_SECRET_NAME  the secret holding the verify token you type in the App Dashboard
#   APP_SECRET_NAME             the secret holding the app secret (also IG_APP_SECRET of the fetcher)
#   WEBHOOK_FUNCTION            default ig-story-metrics-webhook-prod / -staging

load_webhook_settings() {
  local suffix=staging
  [[ "$ENVIRONMENT" != production ]] || suffix=prod
  WEBHOOK_VERIFY_SECRET_NAME=${WEBHOOK_VERIFY_SECRET_NAME:-}
  WEBHOOK_FUNCTION=${WEBHOOK_FUNCTION:-ig-story-metrics-webhook-$suffix}
  WEBHOOK_URL=""
  if [[ -n "$WEBHOOK_VERIFY_SECRET_NAME" && -z "$APP_SECRET_NAME" ]]; then
    usage_error "the webhook receiver checks Meta's signatures with the app secret: set APP_SECRET_NAME too"
  fi
}

deploy_webhook() {
  if [[ -z "$WEBHOOK_VERIFY_SECRET_NAME" ]]; then
    printf 'webhook receiver not deployed (set WEBHOOK_VERIFY_SECRET_NAME and APP_SECRET_NAME)\n'
    return 0
  fi
  run gcloud secrets add-iam-policy-binding "$WEBHOOK_VERIFY_SECRET_NAME" --project="$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/secretmanager.secretAccessor --quiet
  local secrets="IG_APP_SECRET=$APP_SECRET_NAME:latest"
  secrets+=",IG_WEBHOOK_VERIFY_TOKEN=$WEBHOOK_VERIFY_SECRET_NAME:latest"
  run gcloud functions deploy "$WEBHOOK_FUNCTION" --project="$PROJECT" --quiet \
    --gen2 \
    --region="$REGION" \
    --runtime="$RUNTIME" \
    --source="$BUILD_DIR" \
    --entry-point=story_insights_webhook \
    --trigger-http \
    --allow-unauthenticated \
    --service-account="$RUNTIME_SA" \
    --memory=256Mi \
    --min-instances=0 \
    --max-instances=10 \
    --timeout=60s \
    --set-secrets="$secrets" \
    --set-env-vars="STORAGE_URL=$STORAGE_URL,IG_ACCOUNTS_FILE=$(basename "$ACCOUNTS_FILE"),LOG_FORMAT=json"
  capture WEBHOOK_URL "https://DRY-RUN-WEBHOOK-URL" \
    gcloud functions describe "$WEBHOOK_FUNCTION" --project="$PROJECT" --region="$REGION" --gen2 \
    --format="value(serviceConfig.uri)"
  printf 'webhook callback URL (App Dashboard > Webhooks > Instagram): %s\n' "$WEBHOOK_URL"
}
