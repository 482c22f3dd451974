#!/usr/bin/env bash
# Deploy ig-story-metrics as a Cloud Function (2nd gen) with its Cloud Scheduler jobs: the hourly
# run (body {}), the expiry sweep every 10 minutes (body {"mode": "sweep"}) and the daily token
# check (body {"mode":"tokens"}); with WEBHOOK_VERIFY_SECRET_NAME set, the public story_insights
# webhook receiver as a second function (deployment/webhook.sh).
#
#   deployment/deploy.sh staging|production [--dry-run]
#   deployment/deploy.sh staging|production --job --tasks N [--dry-run]
#
# With --job, the same code runs as Cloud Run Jobs instead (deployment/job.sh): the hourly run and
# the sweep, each with N parallel tasks that shard the accounts, started by the same Scheduler jobs
# through the Cloud Run Admin API. deployment/README.md says when to switch.
#
# Re-running it updates what exists instead of failing. --dry-run prints every gcloud command
# ("+ gcloud ...") and runs none, not even describe: it shows the first-deployment plan (see
# lib.sh). Settings come from the environment; deployment/README.md lists them with defaults.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"
# shellcheck source-path=SCRIPTDIR source=webhook.sh
source "$SCRIPT_DIR/webhook.sh"
# shellcheck source-path=SCRIPTDIR source=job.sh
source "$SCRIPT_DIR/job.sh"

USAGE="usage: deployment/deploy.sh staging|production [--job --tasks N] [--dry-run]"
MAX_TASKS=10000 # Cloud Run Jobs' limit of tasks per execution

parse_args() {
  ENVIRONMENT=""
  JOB=0
  TASKS=""
  while [[ $# -gt 0 ]]; do
    local arg=$1
    shift
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --job) JOB=1 ;;
      --tasks=*) TASKS=${arg#--tasks=} ;;
      --tasks)
        [[ $# -gt 0 ]] || usage_error "--tasks takes a number. $USAGE"
        TASKS=$1
        shift
        ;;
      -h | --help)
        printf '%s\n' "$USAGE"
        exit 0
        ;;
      staging | production)
        [[ -z "$ENVIRONMENT" ]] || usage_error "one environment only. $USAGE"
        ENVIRONMENT=$arg
        ;;
      *) usage_error "unknown environment or option '$arg'. $USAGE" ;;
    esac
  done
  [[ -n "$ENVIRONMENT" ]] || usage_error "missing environment. $USAGE"
  if [[ "$JOB" == 1 ]]; then
    [[ -n "$TASKS" ]] || usage_error "--job needs --tasks N (parallel tasks, 1 to $MAX_TASKS). $USAGE"
    [[ "$TASKS" =~ ^[1-9][0-9]*$ && "$TASKS" -le "$MAX_TASKS" ]] ||
      usage_error "--tasks takes a whole number from 1 to $MAX_TASKS, not '$TASKS'"
  elif [[ -n "$TASKS" ]]; then
    usage_error "--tasks goes with --job. $USAGE"
  fi
}

load_settings() {
  require_project
  load_common_settings
  require_bucket_storage_url
  local suffix default_schedule default_sweep
  if [[ "$ENVIRONMENT" == production ]]; then
    suffix=prod
    default_schedule="0 * * * *" # hourly: a story's insights vanish 24 h after posting
    # every 10 minutes, off the hour (minute 5, 15, ..., 55): a story's last sweep is at most
    # 10 minutes before it expires, and no sweep races the hourly run for the same daily file
    default_sweep="5-59/10 * * * *"
  else
    suffix=staging
    default_schedule="0 */2 * * *"
    default_sweep="5-59/30 * * * *"
  fi
  FUNCTION_NAME=${FUNCTION_NAME:-ig-story-metrics-fetcher-$suffix}
  SCHEDULER_JOB=${SCHEDULER_JOB:-ig-story-metrics-scheduler-$suffix}
  SCHEDULE=${SCHEDULE:-$default_schedule}
  SWEEP_JOB=${SWEEP_JOB:-ig-story-metrics-sweep-$suffix}
  SWEEP_SCHEDULE=${SWEEP_SCHEDULE:-$default_sweep}
  # A sweep's own budget is 240 s (it must end before the next one starts 10 minutes later).
  SWEEP_DEADLINE=${SWEEP_DEADLINE:-300s}
  TIME_ZONE=${TIME_ZONE:-Etc/UTC}
  RUNTIME=${RUNTIME:-python312}
  # The run's own time budget is 480 s; the platform timeout must leave it room to finish.
  TIMEOUT=${TIMEOUT:-540s}
  ACCOUNTS_FILE=${ACCOUNTS_FILE:-accounts.toml}
  EXTRA_SECRETS=${EXTRA_SECRETS:-}
  # The daily token check ({"mode": "tokens"}): debug_token counts against the app's rate limit,
  # so once a day; it renews the tokens that are due and logs `token_expiring` for the alert.
  TOKENS_JOB=${TOKENS_JOB:-ig-story-metrics-tokens-$suffix}
  TOKENS_SCHEDULE=${TOKENS_SCHEDULE:-30 6 * * *}
  APP_ID=${APP_ID:-}                   # the Meta app's id (IG_APP_ID)
  APP_SECRET_NAME=${APP_SECRET_NAME:-} # the secret holding the app secret (IG_APP_SECRET)
  RUNTIME_SA=$(sa_email "$RUNTIME_SA_NAME")
  INVOKER_SA=$(sa_email "$INVOKER_SA_NAME")
  load_job_settings "$suffix"
}

# Write requirements.txt (for the Python buildpack): exactly the pins of deployment/constraints.txt
# (`make constraints`), so that every deploy installs the same versions, transitive ones included.
# Refused: a [project] dependency of pyproject.toml that is a URL (the build must come from the
# package index only) or that the constraints do not pin, and any constraint line that is not an
# exact `name==version` pin. tests/test_constraints.py checks that each pin satisfies pyproject.toml.
write_requirements() {
  python3 - "$REPO_ROOT/pyproject.toml" "$SCRIPT_DIR/constraints.txt" "$1/requirements.txt" <<'PY'
import re
import sys
import tomllib

pyproject, constraints, target = sys.argv[1:4]
with open(pyproject, "rb") as f:
    deps = tomllib.load(f).get("project", {}).get("dependencies", [])
if not deps:
    sys.exit(f"error: {pyproject} declares no [project] dependencies")
for dep in deps:
    if "://" in dep or "@" in dep.split(";")[0]:
        sys.exit(f"error: dependency {dep!r} is a URL; requirements.txt takes names and versions")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


try:
    with open(constraints, encoding="utf-8") as f:
        lines = f.read().splitlines()
except FileNotFoundError:
    sys.exit(f"error: {constraints} not found: run `make constraints` and commit it")
pins = {}
for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
    if pin is None:
        sys.exit(f"error: {constraints}:{number}: {line!r} is not an exact name==version pin")
    pins[canonical(pin[1])] = line
unpinned = [d for d in deps if canonical(re.match(r"[A-Za-z0-9._-]*", d.strip())[0]) not in pins]
if unpinned:
    sys.exit(
        f"error: {constraints} does not pin {', '.join(unpinned)} from pyproject.toml: "
        "run `make constraints` and commit it"
    )
with open(target, "w") as f:
    f.write("# generated by deployment/deploy.sh: the pins of deployment/constraints.txt\n")
    f.write("".join(line + "\n" for line in pins.values()))
PY
}

# Lay out the source Cloud Functions builds: main.py, the package at the root (so it is importable
# without installing it), the accounts file and requirements.txt (the pinned versions).
build_source() {
  local package="$REPO_ROOT/src/ig_story_metrics" accounts="$ACCOUNTS_FILE"
  [[ "$accounts" == /* ]] || accounts="$REPO_ROOT/$accounts"
  [[ -f "$REPO_ROOT/pyproject.toml" ]] || die "pyproject.toml not found in $REPO_ROOT"
  [[ -f "$REPO_ROOT/main.py" ]] || die "main.py (the function entry point) not found in $REPO_ROOT"
  [[ -f "$package/__init__.py" ]] || die "package src/ig_story_metrics not found in $REPO_ROOT"
  [[ -f "$accounts" ]] || die "accounts file $accounts not found (set ACCOUNTS_FILE)"

  if [[ -n "${BUILD_DIR:-}" ]]; then
    mkdir -p "$BUILD_DIR"
  else
    BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ig-story-metrics-build.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$BUILD_DIR'" EXIT
  fi
  cp "$REPO_ROOT/main.py" "$BUILD_DIR/main.py"
  rm -rf "$BUILD_DIR/ig_story_metrics"
  cp -R "$package" "$BUILD_DIR/ig_story_metrics"
  find "$BUILD_DIR" -name __pycache__ -type d -prune -exec rm -rf {} +
  cp "$accounts" "$BUILD_DIR/$(basename "$accounts")"
  write_requirements "$BUILD_DIR"
  printf 'source for %s built in %s\n' "$FUNCTION_NAME" "$BUILD_DIR"
}

ensure_identities() {
  ensure_service_account "$RUNTIME_SA_NAME" "ig-story-metrics function runtime"
  # A runtime identity created here has no access yet; one created by setup_github_wif.sh has.
  if [[ "$SA_CREATED" == 1 ]]; then
    grant_runtime_access "$RUNTIME_SA"
  fi
  ensure_service_account "$INVOKER_SA_NAME" "ig-story-metrics scheduler invoker"
}

# Print "VARIABLE SECRET" for each account of the accounts file that names a token_secret.
account_secrets() {
  python3 - "$1" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    accounts = tomllib.load(f).get("accounts", {})
for entry in accounts.values():
    if isinstance(entry, dict) and isinstance(entry.get("token_secret"), str):
        print(entry.get("token_env") or "IG_ACCESS_TOKEN", entry["token_secret"])
PY
}

# Token secrets named by the accounts file: each becomes its variable in the function (from its
# latest version), and the runtime may read it and add versions (the daily renewal).
token_secrets() {
  local accounts="$ACCOUNTS_FILE" variable secret
  [[ "$accounts" == /* ]] || accounts="$REPO_ROOT/$accounts"
  local listing
  listing=$(account_secrets "$accounts") || die "cannot read token_secret entries of $accounts"
  TOKEN_SECRETS=()
  TOKEN_SECRET_VARS=""
  while read -r variable secret; do
    [[ -n "$variable" ]] || continue
    if [[ "$variable" == IG_ACCESS_TOKEN ]]; then
      [[ "$secret" == "$SECRET_NAME" ]] ||
        die "an account of $ACCOUNTS_FILE uses IG_ACCESS_TOKEN (secret $SECRET_NAME) but names token_secret $secret"
    elif [[ ",$TOKEN_SECRET_VARS," != *",$variable=$secret:latest,"* ]]; then
      TOKEN_SECRET_VARS+=",$variable=$secret:latest"
    fi
    [[ " ${TOKEN_SECRETS[*]} " == *" $secret "* ]] || TOKEN_SECRETS+=("$secret")
  done <<<"$listing"
}

grant_token_secrets() {
  local secret member="serviceAccount:$RUNTIME_SA"
  for secret in "${TOKEN_SECRETS[@]}"; do
    run gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT" \
      --member="$member" --role=roles/secretmanager.secretAccessor --quiet
    run gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT" \
      --member="$member" --role=roles/secretmanager.secretVersionAdder --quiet
  done
  if [[ -n "$APP_SECRET_NAME" ]]; then
    run gcloud secrets add-iam-policy-binding "$APP_SECRET_NAME" --project="$PROJECT" \
      --member="$member" --role=roles/secretmanager.secretAccessor --quiet
  fi
}

deploy_function() {
  local secrets="IG_ACCESS_TOKEN=$SECRET_NAME:latest" env_vars
  secrets+="$TOKEN_SECRET_VARS"
  [[ -z "$APP_SECRET_NAME" ]] || secrets+=",IG_APP_SECRET=$APP_SECRET_NAME:latest"
  [[ -z "$EXTRA_SECRETS" ]] || secrets+=",$EXTRA_SECRETS"
  env_vars="STORAGE_URL=$STORAGE_URL,IG_ACCOUNTS_FILE=$(basename "$ACCOUNTS_FILE"),LOG_FORMAT=json"
  [[ -z "$APP_ID" ]] || env_vars+=",IG_APP_ID=$APP_ID"
  # Secret ids in the accounts file are resolved in this project when tokens are renewed.
  [[ ${#TOKEN_SECRETS[@]} == 0 ]] || env_vars+=",GOOGLE_CLOUD_PROJECT=$PROJECT"
  run gcloud functions deploy "$FUNCTION_NAME" --project="$PROJECT" --quiet \
    --gen2 \
    --region="$REGION" \
    --runtime="$RUNTIME" \
    --source="$BUILD_DIR" \
    --entry-point=fetch_story_metrics \
    --trigger-http \
    --no-allow-unauthenticated \
    --service-account="$RUNTIME_SA" \
    --memory=512Mi \
    --min-instances=0 \
    --max-instances=10 \
    --timeout="$TIMEOUT" \
    --set-secrets="$secrets" \
    --set-env-vars="$env_vars"
  capture FUNCTION_URL "https://DRY-RUN-FUNCTION-URL" \
    gcloud functions describe "$FUNCTION_NAME" --project="$PROJECT" --region="$REGION" --gen2 \
    --format="value(serviceConfig.uri)"
  [[ -n "$FUNCTION_URL" ]] || die "could not read the URL of function $FUNCTION_NAME"
  # Gen2 functions are Cloud Run services: this grants roles/run.invoker on that service only.
  run gcloud functions add-invoker-policy-binding "$FUNCTION_NAME" --project="$PROJECT" --quiet \
    --region="$REGION" --member="serviceAccount:$INVOKER_SA"
}

# schedule_job NAME SCHEDULE BODY DEADLINE: create or update one Cloud Scheduler job that POSTs
# BODY to the function with an OIDC token of the invoker.
schedule_job() {
  local name=$1 schedule=$2 body=$3 deadline=$4
  local common=(
    --project="$PROJECT" --quiet
    --location="$REGION"
    --schedule="$schedule"
    --time-zone="$TIME_ZONE"
    --uri="$FUNCTION_URL"
    --http-method=POST
    --message-body="$body"
    --oidc-service-account-email="$INVOKER_SA"
    --oidc-token-audience="$FUNCTION_URL"
    --attempt-deadline="$deadline"
  )
  upsert_scheduler_job "$name" "${common[@]}"
}

schedule_function() {
  # The hourly run's attempt deadline matches the function timeout, so that Scheduler does not
  # give up on a run that is still within its budget (the default deadline is 3 minutes).
  schedule_job "$SCHEDULER_JOB" "$SCHEDULE" "{}" "$TIMEOUT"
  schedule_job "$SWEEP_JOB" "$SWEEP_SCHEDULE" '{"mode": "sweep"}' "$SWEEP_DEADLINE"
  schedule_job "$TOKENS_JOB" "$TOKENS_SCHEDULE" '{"mode":"tokens"}' "$TIMEOUT"
}

main() {
  parse_args "$@"
  load_settings
  load_webhook_settings
  if dry_run; then
    printf 'dry run: nothing is executed; existing resources are assumed absent\n'
  fi
  build_source
  token_secrets
  ensure_identities
  grant_token_secrets
  if [[ "$JOB" == 1 ]]; then
    add_dockerfile
    deploy_jobs
    schedule_jobs
    printf 'deployed Cloud Run Jobs %s and %s (%s tasks each, %s) to %s, scheduled "%s" and sweeps "%s" %s\n' \
      "$JOB_NAME" "$SWEEP_JOB_NAME" "$TASKS" "$ENVIRONMENT" "$PROJECT" "$SCHEDULE" \
      "$SWEEP_SCHEDULE" "$TIME_ZONE"
    return
  fi
  deploy_function
  schedule_function
  deploy_webhook
  printf 'deployed %s (%s) to %s, scheduled "%s" and sweeps "%s" %s, token check "%s"\n' \
    "$FUNCTION_NAME" "$ENVIRONMENT" "$PROJECT" "$SCHEDULE" "$SWEEP_SCHEDULE" "$TIME_ZONE" \
    "$TOKENS_SCHEDULE"
}

main "$@"
