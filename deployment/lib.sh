# shellcheck shell=bash
# Helpers shared by deploy.sh and setup_github_wif.sh. Source it; do not run it.
#
# Every gcloud command goes through `run`, `capture` or `exists`, which print it first as
# "+ gcloud ..." (one line, quoted so that it can be pasted back into a shell). With DRY_RUN=1
# nothing is executed at all, not even read-only `describe` calls:
#   - `exists` prints the describe command and answers "does not exist", so a dry run shows the
#     plan of a first deployment (create commands); a real re-run uses the update path instead;
#   - `capture` prints the command and returns the placeholder it was given.

DRY_RUN=${DRY_RUN:-0}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

usage_error() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}

dry_run() {
  [[ "$DRY_RUN" == 1 ]]
}

# Print a command as one line: words made of safe characters as they are, others single-quoted.
print_cmd() {
  local word out="" sq="'" escaped_sq="'\\''"
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
      out+=" $word"
    else
      out+=" '${word//$sq/$escaped_sq}'"
    fi
  done
  printf '+%s\n' "$out"
}

# run CMD...: print CMD and execute it (unless dry run).
run() {
  print_cmd "$@"
  if ! dry_run; then
    "$@"
  fi
}

# capture VAR PLACEHOLDER CMD...: print CMD, execute it and store its stdout in VAR.
# In a dry run VAR gets PLACEHOLDER instead.
capture() {
  local var=$1 placeholder=$2 output
  shift 2
  print_cmd "$@"
  if dry_run; then
    output=$placeholder
  else
    output=$("$@")
  fi
  printf -v "$var" '%s' "$output"
}

# exists CMD...: run a describe command quietly; true when the resource exists.
# A dry run executes nothing and answers false (see the top of this file).
exists() {
  print_cmd "$@"
  if dry_run; then
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# The project comes only from GOOGLE_CLOUD_PROJECT: never deploy to whatever gcloud happens to
# have configured.
require_project() {
  if [[ -z "${GOOGLE_CLOUD_PROJECT:-}" ]]; then
    usage_error "GOOGLE_CLOUD_PROJECT is not set: export GOOGLE_CLOUD_PROJECT=<your-project-id>"
  fi
  PROJECT=$GOOGLE_CLOUD_PROJECT
}

# The function runs on Cloud Functions, whose disk is lost after every run: the lake must be a
# bucket. The same rules as the tool's own check (src/ig_story_metrics/model/location.py), plus no
# comma or blank, which --set-env-vars cannot carry. Exits 2 before any gcloud call.
require_bucket_storage_url() {
  local url=$STORAGE_URL rest bucket prefix part
  local forms="use gs://BUCKET or gs://BUCKET/PREFIX"
  if [[ "$url" == gs:* && "$url" != gs://* ]]; then
    usage_error "STORAGE_URL '$url' is malformed (a bucket URL has two slashes); $forms"
  fi
  if [[ "$url" != gs://* ]]; then
    usage_error "STORAGE_URL '$url' is not a bucket: the function's disk is lost after every run; $forms"
  fi
  [[ "$url" != *[,[:space:][:cntrl:]]* ]] ||
    usage_error "STORAGE_URL '$url' contains a comma, a blank or a control character; $forms"
  rest=${url#gs://}
  bucket=${rest%%/*}
  prefix=""
  [[ "$rest" != */* ]] || prefix=${rest#*/}
  valid_bucket_name "$bucket" ||
    usage_error "STORAGE_URL '$url' does not name a valid bucket; $forms"
  prefix=${prefix%/}
  if [[ -n "$prefix" ]]; then
    local -a parts
    IFS=/ read -r -a parts <<<"$prefix/"
    for part in "${parts[@]}"; do
      if [[ -z "$part" || "$part" == . || "$part" == .. ]]; then
        usage_error "STORAGE_URL '$url' has an empty, '.' or '..' part in its prefix; $forms"
      fi
    done
  fi
}

# valid_bucket_name NAME: GCS's rules (3-63 characters, 222 with dots and at most 63 per part; a-z
# 0-9 - _ .; alphanumeric at both ends; not an IP address; no "goog" prefix, no "google").
valid_bucket_name() {
  local name=$1 part max=63
  [[ "$name" =~ ^[a-z0-9][a-z0-9._-]*[a-z0-9]$ && "$name" != *..* ]] || return 1
  [[ "$name" != *.* ]] || max=222
  ((${#name} >= 3 && ${#name} <= max)) || return 1
  local -a parts
  IFS=. read -r -a parts <<<"$name"
  for part in "${parts[@]}"; do
    ((${#part} <= 63)) || return 1
  done
  [[ ! "$name" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  [[ "$name" != goog* && "$name" != *google* ]]
}

sa_email() {
  printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT"
}

# ensure_service_account NAME DISPLAY_NAME: create the service account unless it exists.
# Sets SA_CREATED=1 when it had to be created, 0 otherwise.
ensure_service_account() {
  local name=$1 display_name=$2
  # shellcheck disable=SC2034 # SA_CREATED is this function's result, read by the caller
  SA_CREATED=0
  if exists gcloud iam service-accounts describe "$(sa_email "$name")" --project="$PROJECT"; then
    return 0
  fi
  run gcloud iam service-accounts create "$name" --project="$PROJECT" \
    --display-name="$display_name" --quiet
  # shellcheck disable=SC2034 # read by the caller
  SA_CREATED=1
}

# grant_runtime_access RUNTIME_EMAIL: what the function's own identity needs, and nothing more:
# read the token secret, and read/write objects (no bucket admin) when storage is a GCS bucket.
# Both bindings are idempotent.
grant_runtime_access() {
  local member="serviceAccount:$1"
  run gcloud secrets add-iam-policy-binding "$SECRET_NAME" --project="$PROJECT" \
    --member="$member" --role=roles/secretmanager.secretAccessor --quiet
  if [[ "$STORAGE_URL" == gs://* ]]; then
    local bucket=${STORAGE_URL#gs://}
    bucket=${bucket%%/*}
    run gcloud storage buckets add-iam-policy-binding "gs://$bucket" --project="$PROJECT" \
      --member="$member" --role=roles/storage.objectUser --quiet
  fi
}

# Names and defaults shared by both scripts (override any of them from the environment).
# Both environments share the runtime and invoker identities; they differ in function and job.
load_common_settings() {
  REGION=${REGION:-us-central1}
  BUCKET=${BUCKET:-chapala-bronze-bucket}
  STORAGE_URL=${STORAGE_URL:-gs://$BUCKET}
  SECRET_NAME=${SECRET_NAME:-ig-access-token}
  RUNTIME_SA_NAME=${RUNTIME_SA_NAME:-ig-story-metrics-runtime}
  INVOKER_SA_NAME=${INVOKER_SA_NAME:-ig-story-metrics-invoker}
  DEPLOYER_SA_NAME=${DEPLOYER_SA_NAME:-ig-story-metrics-deployer}
}

# upsert_scheduler_job NAME ARGS...: create the Cloud Scheduler HTTP job NAME with ARGS (which name
# its project and location), or update it when it exists; the body is JSON either way.
upsert_scheduler_job() {
  local name=$1
  shift
  if exists gcloud scheduler jobs describe "$name" --project="$PROJECT" --location="$REGION"; then
    run gcloud scheduler jobs update http "$name" "$@" \
      --update-headers=Content-Type=application/json
  else
    run gcloud scheduler jobs create http "$name" "$@" \
      --headers=Content-Type=application/json
  fi
}
