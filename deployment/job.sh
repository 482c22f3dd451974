# shellcheck shell=bash
# The Cloud Run Jobs deployment of deploy.sh (`--job --tasks N`): for fleets past what one
# function captures within its 540 s timeout. Source it from deploy.sh; do not run it.
#
# The same source as the function, built into an image by deployment/Dockerfile, runs as two Cloud
# Run Jobs: the hourly run (`run --all`) and the sweep (`sweep --all`, the first job's image), each
# with N parallel tasks that shard the accounts by name (CLOUD_RUN_TASK_INDEX/COUNT), one retry per
# task and a task timeout above the run's budget. Cloud Scheduler starts an execution of each
# through the Cloud Run Admin API (jobs.run), with an OAuth token of the invoker service account,
# which may run these two jobs and nothing else.

load_job_settings() {
  local suffix=$1
  JOB_NAME=${JOB_NAME:-ig-story-metrics-job-$suffix}
  SWEEP_JOB_NAME=${SWEEP_JOB_NAME:-ig-story-metrics-sweep-job-$suffix}
  # The run's budget is 480 s (IG_RUN_BUDGET_SECONDS), the sweep's at most 240 s.
  TASK_TIMEOUT=${TASK_TIMEOUT:-600s}
  SWEEP_TASK_TIMEOUT=${SWEEP_TASK_TIMEOUT:-300s}
  JOB_MEMORY=${JOB_MEMORY:-512Mi}
  JOB_CPU=${JOB_CPU:-1}
}

# The Dockerfile beside the function's source (built by build_source).
add_dockerfile() {
  [[ -f "$SCRIPT_DIR/Dockerfile" ]] || die "deployment/Dockerfile not found in $REPO_ROOT"
  cp "$SCRIPT_DIR/Dockerfile" "$BUILD_DIR/Dockerfile"
}

# job_flags TIMEOUT: the flags both jobs share (name, command and image apart).
job_flags() {
  local secrets="IG_ACCESS_TOKEN=$SECRET_NAME:latest" env_vars
  secrets+="$TOKEN_SECRET_VARS"
  [[ -z "$APP_SECRET_NAME" ]] || secrets+=",IG_APP_SECRET=$APP_SECRET_NAME:latest"
  [[ -z "$EXTRA_SECRETS" ]] || secrets+=",$EXTRA_SECRETS"
  env_vars="STORAGE_URL=$STORAGE_URL,IG_ACCOUNTS_FILE=$(basename "$ACCOUNTS_FILE"),LOG_FORMAT=json"
  [[ -z "$APP_ID" ]] || env_vars+=",IG_APP_ID=$APP_ID"
  [[ ${#TOKEN_SECRETS[@]} == 0 ]] || env_vars+=",GOOGLE_CLOUD_PROJECT=$PROJECT"
  JOB_FLAGS=(
    --project="$PROJECT" --quiet
    --region="$REGION"
    --tasks="$TASKS"
    --parallelism="$TASKS"
    --max-retries=1
    --task-timeout="$1"
    --service-account="$RUNTIME_SA"
    --memory="$JOB_MEMORY"
    --cpu="$JOB_CPU"
    --set-secrets="$secrets"
    --set-env-vars="$env_vars"
  )
}

deploy_jobs() {
  job_flags "$TASK_TIMEOUT"
  run gcloud run jobs deploy "$JOB_NAME" "${JOB_FLAGS[@]}" --source="$BUILD_DIR" --args=run,--all
  capture JOB_IMAGE "DRY-RUN-JOB-IMAGE" \
    gcloud run jobs describe "$JOB_NAME" --project="$PROJECT" --region="$REGION" \
    --format="value(template.template.containers[0].image)"
  [[ -n "$JOB_IMAGE" ]] || die "could not read the image of job $JOB_NAME"
  job_flags "$SWEEP_TASK_TIMEOUT"
  run gcloud run jobs deploy "$SWEEP_JOB_NAME" "${JOB_FLAGS[@]}" --image="$JOB_IMAGE" \
    --args=sweep,--all
  local job
  for job in "$JOB_NAME" "$SWEEP_JOB_NAME"; do
    # roles/run.invoker on this job only: it may start executions, nothing else.
    run gcloud run jobs add-iam-policy-binding "$job" --project="$PROJECT" --quiet \
      --region="$REGION" --member="serviceAccount:$INVOKER_SA" --role=roles/run.invoker
  done
}

# schedule_execution NAME SCHEDULE JOB DEADLINE: a Scheduler job that starts an execution of JOB
# through the Cloud Run Admin API, with an OAuth token of the invoker.
schedule_execution() {
  local name=$1 schedule=$2 job=$3 deadline=$4
  local uri="https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/$job:run"
  local common=(
    --project="$PROJECT" --quiet
    --location="$REGION"
    --schedule="$schedule"
    --time-zone="$TIME_ZONE"
    --uri="$uri"
    --http-method=POST
    --message-body="{}"
    --oauth-service-account-email="$INVOKER_SA"
    --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
    --attempt-deadline="$deadline"
  )
  upsert_scheduler_job "$name" "${common[@]}"
}

# jobs.run answers once the execution has started: a short deadline is enough.
# SCHEDULE and SWEEP_SCHEDULE come from deploy.sh's load_settings.
# shellcheck disable=SC2153
schedule_jobs() {
  schedule_execution "$SCHEDULER_JOB" "$SCHEDULE" "$JOB_NAME" 60s
  schedule_execution "$SWEEP_JOB" "$SWEEP_SCHEDULE" "$SWEEP_JOB_NAME" 60s
}
