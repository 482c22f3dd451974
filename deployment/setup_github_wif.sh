#!/usr/bin/env bash
# One-time setup, run by a project owner: let GitHub Actions of ONE repository deploy
# ig-story-metrics through Workload Identity Federation (no service account keys).
#
#   GOOGLE_CLOUD_PROJECT=my-project GITHUB_REPOSITORY=owner/name deployment/setup_github_wif.sh [--dry-run]
#
# Creates (or, on a re-run, finds and updates) the workload identity pool and GitHub OIDC provider,
# the deployer, runtime and invoker service accounts, and the IAM bindings between them, then
# prints the WIF_PROVIDER and WIF_SERVICE_ACCOUNT values to store as GitHub secrets.
# --dry-run prints every gcloud command and runs none (the project number is a placeholder).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

USAGE="usage: GITHUB_REPOSITORY=owner/name deployment/setup_github_wif.sh [--dry-run]"
ISSUER_URI=https://token.actions.githubusercontent.com

# The deployer's project-level roles, each the narrowest predefined role for its job:
DEPLOYER_PROJECT_ROLES=(
  # deploy/update/describe functions (gen2 included) and follow their Cloud Build build; the
  # build itself runs as the build service account, so no cloudbuild.builds.editor and no
  # artifactregistry.writer for the deployer, and the source upload goes through a signed URL
  # that the Functions API hands out, so no storage role either.
  roles/cloudfunctions.developer
  # `gcloud functions add-invoker-policy-binding`: a gen2 function is a Cloud Run service, and
  # setting its IAM policy (run.services.setIamPolicy) is only in run.admin among predefined roles.
  roles/run.admin
  # create/update the Scheduler job (Cloud Scheduler has no narrower role that can write jobs).
  roles/cloudscheduler.admin
)
# Not granted: roles/secretmanager.*: at deploy time Cloud Run checks that the RUNTIME identity
# can read the secret; the deployer never reads it. roles/iam.serviceAccountUser is granted on
# the runtime and invoker accounts only (below), never on the project.

parse_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        printf '%s\n' "$USAGE"
        exit 0
        ;;
      *) usage_error "unknown argument '$arg'. $USAGE" ;;
    esac
  done
}

load_settings() {
  require_project
  load_common_settings
  # The repository name ends up inside a CEL condition and an IAM principal: accept only
  # GitHub's own characters, exactly one slash.
  REPOSITORY=${GITHUB_REPOSITORY:-}
  if [[ ! "$REPOSITORY" =~ ^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$ ]]; then
    usage_error "GITHUB_REPOSITORY must be owner/name (got '$REPOSITORY'). $USAGE"
  fi
  POOL_ID=${POOL_ID:-github-pool}
  PROVIDER_ID=${PROVIDER_ID:-github-provider}
  DEPLOYER_SA=$(sa_email "$DEPLOYER_SA_NAME")
  RUNTIME_SA=$(sa_email "$RUNTIME_SA_NAME")
  INVOKER_SA=$(sa_email "$INVOKER_SA_NAME")
}

# The runtime identity is granted access to the token secret, so the secret must exist first.
require_secret() {
  if exists gcloud secrets describe "$SECRET_NAME" --project="$PROJECT" || dry_run; then
    return 0
  fi
  die "secret $SECRET_NAME not found in $PROJECT; create it first:" \
    "printf %s \"\$TOKEN\" | gcloud secrets create $SECRET_NAME --data-file=-"
}

ensure_pool() {
  if exists gcloud iam workload-identity-pools describe "$POOL_ID" --project="$PROJECT" \
    --location=global; then
    return 0
  fi
  run gcloud iam workload-identity-pools create "$POOL_ID" --project="$PROJECT" --quiet \
    --location=global --display-name="GitHub Actions"
}

# Only tokens minted for this repository are accepted (attribute condition); a re-run updates
# the provider so that the condition always names the current repository.
ensure_provider() {
  local options=(
    --project="$PROJECT" --quiet
    --location=global
    --workload-identity-pool="$POOL_ID"
    --issuer-uri="$ISSUER_URI"
    --attribute-mapping="google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.repository_owner=assertion.repository_owner,attribute.ref=assertion.ref,attribute.workflow_ref=assertion.workflow_ref"
    --attribute-condition="assertion.repository=='$REPOSITORY'"
  )
  if exists gcloud iam workload-identity-pools providers describe "$PROVIDER_ID" \
    --project="$PROJECT" --location=global --workload-identity-pool="$POOL_ID"; then
    run gcloud iam workload-identity-pools providers update-oidc "$PROVIDER_ID" "${options[@]}"
  else
    run gcloud iam workload-identity-pools providers create-oidc "$PROVIDER_ID" "${options[@]}" \
      --display-name="GitHub Actions"
  fi
}

ensure_identities() {
  ensure_service_account "$DEPLOYER_SA_NAME" "ig-story-metrics deployer (GitHub Actions)"
  ensure_service_account "$RUNTIME_SA_NAME" "ig-story-metrics function runtime"
  ensure_service_account "$INVOKER_SA_NAME" "ig-story-metrics scheduler invoker"
}

grant_deployer_roles() {
  local role sa
  for role in "${DEPLOYER_PROJECT_ROLES[@]}"; do
    run gcloud projects add-iam-policy-binding "$PROJECT" --quiet \
      --member="serviceAccount:$DEPLOYER_SA" --role="$role" --condition=None
  done
  # actAs: deploy a function that runs as the runtime account, and create a Scheduler job that
  # signs its OIDC tokens as the invoker account. On these two accounts only.
  for sa in "$RUNTIME_SA" "$INVOKER_SA"; do
    run gcloud iam service-accounts add-iam-policy-binding "$sa" --project="$PROJECT" --quiet \
      --member="serviceAccount:$DEPLOYER_SA" --role=roles/iam.serviceAccountUser
  done
}

bind_repository() {
  local pool="projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/$POOL_ID"
  run gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER_SA" --project="$PROJECT" \
    --quiet --role=roles/iam.workloadIdentityUser \
    --member="principalSet://iam.googleapis.com/$pool/attribute.repository/$REPOSITORY"
  WIF_PROVIDER="$pool/providers/$PROVIDER_ID"
}

main() {
  parse_args "$@"
  load_settings
  if dry_run; then
    printf 'dry run: nothing is executed; existing resources are assumed absent\n'
  fi
  capture PROJECT_NUMBER PROJECT_NUMBER \
    gcloud projects describe "$PROJECT" --format="value(projectNumber)"
  [[ "$PROJECT_NUMBER" =~ ^[0-9]+$ ]] || dry_run || die "could not read the number of $PROJECT"
  require_secret
  ensure_pool
  ensure_provider
  ensure_identities
  grant_deployer_roles
  grant_runtime_access "$RUNTIME_SA"
  bind_repository
  cat <<EOF

Store these two values as Actions secrets of $REPOSITORY, and GOOGLE_CLOUD_PROJECT=$PROJECT
as an Actions variable (Settings > Secrets and variables > Actions):
WIF_PROVIDER=$WIF_PROVIDER
WIF_SERVICE_ACCOUNT=$DEPLOYER_SA
For example with the GitHub CLI:
  gh secret set WIF_PROVIDER --repo $REPOSITORY --body '$WIF_PROVIDER'
  gh secret set WIF_SERVICE_ACCOUNT --repo $REPOSITORY --body '$DEPLOYER_SA'
  gh variable set GOOGLE_CLOUD_PROJECT --repo $REPOSITORY --body '$PROJECT'
EOF
}

main "$@"
