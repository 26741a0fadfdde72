//! The `Application`: one spec read by the CLI (`-f app.yaml`, or built from
//! flags) and by the controller (as the `windlass.dev/v1alpha1` CRD).
//!
//! ```text
//!   Application
//!   ├─ source       repoURL, ref, path, secretRef     → source::Repo + ref + path
//!   │               renderer (auto: detected)         → render
//!   ├─ environment  values/<env>.yaml of a chart      → render
//!   ├─ values       inline values                     → render (layer 3)
//!   ├─ destination  namespace                         → render + sync
//!   ├─ sync         automated, prune, selfHeal, interval, windows
//!   ├─ rollback     onHealthFailure, healthTimeout
//!   ├─ historyLimit, dependsOn, suspend
//!   ├─ notifications provider, secretRef, events, template → notify::Target
//! ```
//!
//! Durations (`interval`, `healthTimeout`, window `duration`) use Go's
//! `time.ParseDuration` syntax, as Kubernetes and Flux do: `90s`, `5m`,
//! `1h30m`, `62h`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An application: where its manifests come from and how windlass keeps the
/// cluster equal to them.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "windlass.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    shortname = "wapp",
    category = "windlass",
    status = "ApplicationStatus",
    doc = "An application: where its manifests come from and how windlass keeps the cluster equal to them.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Commit","type":"string","jsonPath":".status.lastAppliedCommit"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    pub source: Source,
    /// Selects `values/<environment>.yaml` of a chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Inline values, above the chart's and the environment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub destination: Destination,
    /// Limits on what the rendered objects may be. Generated preview
    /// Applications always carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrictions: Option<Restrictions>,
    #[serde(default)]
    pub sync: SyncPolicy,
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// How many revision records to keep (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), with = "Option<i32>")]
    pub history_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Fields windlass leaves to others: left out of diff, drift and apply
    /// (an HPA's `/spec/replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifference>,
    /// Who is told what happened: chat webhooks, generic webhooks, commit
    /// statuses (see the README, "Notifications").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
}

/// Fields of matching objects that windlass neither sets nor reports.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifference {
    /// The API group (none: the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers: `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// Every field these field managers own (outside list items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
}

/// Where the manifests come from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// https://, ssh://, git://, file:// or (CLI only) a local path.
    #[serde(rename = "repoURL")]
    #[schemars(length(min = 1))]
    pub repo_url: String,
    /// Branch, tag, commit, full ref or semver range. Default: the remote's HEAD.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub reference: Option<String>,
    /// Directory inside the repository. Default: its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Secret in the Application's namespace: `username`/`password`, or
    /// `identity` (SSH private key) and `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Which engine renders the path: `auto` (the default) detects it from
    /// the files; `plain`, `windlass-chart`, `kustomize` or `helm` skip
    /// detection, and a path that is not of that kind is an error.
    #[serde(default, skip_serializing_if = "Renderer::is_auto")]
    pub renderer: Renderer,
}

/// `spec.source.renderer` (and the CLI's `--renderer`).
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Renderer {
    /// Detect the engine from the files (the default).
    #[default]
    Auto,
    /// Plain manifests: every .yaml/.yml/.json, not templated.
    Plain,
    /// A windlass chart: handlebars templates.
    WindlassChart,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
}

impl Renderer {
    pub fn is_auto(&self) -> bool {
        *self == Renderer::Auto
    }

    /// The engine it names; `None` for `auto` (detect).
    pub fn engine(self) -> Option<crate::render::Engine> {
        use crate::render::Engine;
        match self {
            Renderer::Auto => None,
            Renderer::Plain => Some(Engine::Plain),
            Renderer::WindlassChart => Some(Engine::WindlassChart),
            Renderer::Kustomize => Some(Engine::Kustomize),
            Renderer::Helm => Some(Engine::Helm),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct LocalObjectReference {
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Namespace for namespaced objects that name none. Default: the
    /// Application's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What an Application may hold. Checked after rendering, before anything is
/// planned or written (`windlass diff`, `windlass sync` and the controller
/// alike): a refused object fails the whole render, naming each object.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Restrictions {
    /// Only namespaced objects in the destination namespace: cluster-scoped
    /// objects (ClusterRole, Namespace, CRD, webhooks...) and objects in
    /// other namespaces are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destination_namespace_only: bool,
    /// Kinds exempt from `destinationNamespaceOnly`: `Kind` (any group) or
    /// `Kind.group` (`ClusterRole.rbac.authorization.k8s.io`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_kinds: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync on every change without being asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automated: bool,
    /// Delete objects that left the desired state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    /// Revert hand edits (drift) instead of only reporting them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_heal: bool,
    /// Wait for the applied objects to be healthy (up to
    /// `rollback.healthTimeout`) before the Application is Ready (default
    /// true). Off: Ready once the server accepted every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// How often to check the source and the cluster (default 1m), in Go
    /// duration syntax: `30s`, `5m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<SyncWindow>,
    /// Accept a render with no objects (and prune everything it had):
    /// otherwise an empty render is an error, as it is far more often a
    /// wrong path than an intent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
}

/// A time window that allows or denies automated syncs: active from each
/// start of `schedule` for `duration`. An active deny window wins; with any
/// allow window, syncs run only while one is active.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// `allow` or `deny`.
    #[schemars(pattern("^(allow|deny)$"))]
    pub kind: String,
    /// Cron as a Kubernetes CronJob reads it: five fields (minute hour
    /// day-of-month month day-of-week), or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`.
    #[schemars(length(min = 6))]
    pub schedule: String,
    /// How long each start keeps the window active (elapsed time): `1h30m`, `62h`.
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: String,
    /// IANA time zone of the schedule (default `UTC`): `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_health_failure: bool,
    /// How long to wait for health after a sync (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub health_timeout: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Dependency {
    /// An Application in the same namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// One notification target: where to send which events.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub provider: NotificationProvider,
    /// A Secret in the Application's namespace: `address` (the webhook URL
    /// of `webhook`, `slack`, `teams`), `token` (required by `github` and
    /// `gitlab`; a bearer token for `webhook`), `hmacKey` (`webhook`: sign
    /// the body), `apiURL` (`github`, `gitlab`: the API base URL) and, for
    /// `github` and `gitlab`, an optional `address`: the status's link.
    pub secret_ref: LocalObjectReference,
    /// The events to send. Empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotificationEvent>,
    /// The API base URL of `github` (default `https://api.github.com`) or
    /// `gitlab` (default `https://gitlab.com/api/v4`). The Secret's
    /// `apiURL` wins over this field.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub api_url: Option<String>,
    /// Message templates that replace the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<NotificationTemplate>,
}

/// Where a notification goes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NotificationProvider {
    /// A generic JSON POST, optionally signed (`X-Signature: sha256=<hex>`).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams workflow webhook (an Adaptive Card).
    Teams,
    /// A GitHub commit status.
    Github,
    /// A GitLab commit status.
    Gitlab,
}

impl NotificationProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationProvider::Webhook => "webhook",
            NotificationProvider::Slack => "slack",
            NotificationProvider::Teams => "teams",
            NotificationProvider::Github => "github",
            NotificationProvider::Gitlab => "gitlab",
        }
    }
}

impl std::fmt::Display for NotificationProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What windlass tells people about.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationEvent {
    /// A sync applied a revision (and it is healthy, when waited for).
    SyncSucceeded,
    /// A sync failed: render, plan, apply or prune.
    SyncFailed,
    /// Applied objects did not become healthy (or stopped being healthy).
    HealthDegraded,
    /// A failed revision was rolled back to the last good one.
    RolledBack,
    /// Live objects differ from the applied revision (hand edits).
    DriftDetected,
    /// Drift was reverted (`sync.selfHeal`).
    DriftCorrected,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 6] = [
        NotificationEvent::SyncSucceeded,
        NotificationEvent::SyncFailed,
        NotificationEvent::HealthDegraded,
        NotificationEvent::RolledBack,
        NotificationEvent::DriftDetected,
        NotificationEvent::DriftCorrected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::SyncSucceeded => "sync-succeeded",
            NotificationEvent::SyncFailed => "sync-failed",
            NotificationEvent::HealthDegraded => "health-degraded",
            NotificationEvent::RolledBack => "rolled-back",
            NotificationEvent::DriftDetected => "drift-detected",
            NotificationEvent::DriftCorrected => "drift-corrected",
        }
    }
}

impl std::fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationTemplate {
    /// A ConfigMap in the Application's namespace whose keys
    /// `<family>.<event>.hbs` (e.g. `slack.drift-detected.hbs`) replace
    /// built-in templates; families: `webhook`, `slack`, `teams`,
    /// `commit-status`.
    pub config_map_ref: LocalObjectReference,
}

/// What the controller last did and saw. Small by design: conditions,
/// numbers, digests and commits, never manifests.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus conventions) and `Drifted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision number (see `windlass history`) live in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// The commit the last reconcile resolved, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_commit: Option<String>,
    /// sha256 of the applied manifests (`windlass render` prints the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// How many objects the applied revision holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<i64>,
    /// When windlass last wrote to the cluster for this application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// A commit that failed its health check and was rolled back
    /// automatically: it is not applied again until a new commit arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back_commit: Option<String>,
    /// The last `windlass.dev/requested-at` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// What deleting the Application does to its objects: `Prune` (they are
    /// deleted, as `sync.prune` is on) or `Orphan` (they stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
}

/// Pull-request previews: every ref of a repository matching a pattern
/// (`refs/pull/*/head`) gets its own namespace and a generated Application
/// rendered from `template`, torn down when the ref goes.
///
/// ```text
///   Preview ──list refs (one per repository per interval)──► refs/pull/7/head @ 4f2a…
///      │                                                        │
///      ├─ owns ─► Application <preview>-pr-7 (ref: 4f2a…, restricted to its namespace)
///      └─ labels ─► Namespace <preview>-pr-7
/// ```
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "windlass.dev",
    version = "v1alpha1",
    kind = "Preview",
    namespaced,
    shortname = "wpreview",
    category = "windlass",
    status = "PreviewStatus",
    doc = "Pull-request previews: one namespace and one generated Application per matching ref, removed when the ref goes.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Previews","type":"integer","jsonPath":".status.count"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PreviewSpec {
    pub source: PreviewSource,
    /// The generated Applications. `{{number}}`, `{{branch}}`, `{{sha}}`,
    /// `{{shortSha}}` and `{{slug}}` are replaced in `path`, `environment`,
    /// `values` (string values) and `destination.namespace`.
    #[serde(default)]
    pub template: PreviewTemplate,
    /// At most this many previews at once (default 10). Existing previews
    /// keep their place; new refs wait, in name order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), with = "Option<i32>")]
    pub max_previews: Option<u32>,
    /// Tear a preview down when its head has not moved for this long
    /// (`72h`); it comes back with the next commit. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub ttl: Option<String>,
    /// How often the repository's refs are listed (default 1m). Previews of
    /// one repository with the same interval share one listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Kinds a preview may create although they are cluster-scoped or in
    /// another namespace: `Kind` or `Kind.group`. Default: none, a preview
    /// holds only namespaced objects in its own namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_kinds: Vec<String>,
    /// A URL shown in `status.previews` and `windlass previews`, with the
    /// same placeholders: `https://{{slug}}.preview.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Pod Security level enforced in each preview namespace:
    /// `baseline` (default: no privileged pods, host namespaces or hostPath
    /// volumes, which would reach the node), `restricted` or `privileged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^(privileged|baseline|restricted)$"))]
    pub pod_security: Option<String>,
    /// Ask the Git host which pull requests are open: only open, non-draft
    /// ones (with `labels`) get previews, and each preview's state is
    /// posted as a commit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ScmProvider>,
}

/// A Git host's API for pull-request previews.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScmProvider {
    /// `github`, `gitlab` or `gitea` (Forgejo too).
    #[serde(rename = "type")]
    #[schemars(pattern("^(github|gitlab|gitea)$"))]
    pub kind: String,
    /// The API's base URL. Default: `https://api.github.com` (github),
    /// `https://gitlab.com/api/v4` (gitlab); required for gitea
    /// (`https://gitea.example.com/api/v1`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `owner/name` (GitLab: the project's full path). Default: from
    /// `source.repoURL`'s path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A Secret in the Preview's namespace whose key `token` holds an API
    /// token (read pull requests; write commit statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<LocalObjectReference>,
    /// Only pull requests carrying all these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Post each preview's state (pending, success, failure, with the URL)
    /// as a commit status `windlass/preview` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status: Option<bool>,
}

/// Where the previews come from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewSource {
    #[serde(rename = "repoURL")]
    #[schemars(length(min = 1))]
    pub repo_url: String,
    /// A Secret in the Preview's namespace, as an Application's `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Full ref names with one `*` standing for one path component:
    /// `refs/pull/*/head`, `refs/merge-requests/*/head`, `refs/heads/feature/*`.
    #[schemars(pattern(r"^refs/[^*]*\*[^*]*$"))]
    pub ref_pattern: String,
}

/// An Application spec without its source (which the Preview gives).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewTemplate {
    /// Directory inside the repository. Default: its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The generated Applications' `source.renderer` (default `auto`).
    #[serde(default, skip_serializing_if = "Renderer::is_auto")]
    pub renderer: Renderer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    /// `destination.namespace` defaults to `<preview>-pr-<number>`
    /// (`<preview>-<slug>` for branch patterns); made a DNS-1123 label of
    /// at most 63 characters.
    #[serde(default)]
    pub destination: Destination,
    /// `automated` and `prune` are always on for previews.
    #[serde(default)]
    pub sync: SyncPolicy,
    #[serde(default)]
    pub rollback: RollbackPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), with = "Option<i32>")]
    pub history_limit: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the refs were listed and every preview written; `Refused`:
    /// some preview holds objects outside its restrictions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many previews exist.
    #[serde(default)]
    pub count: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previews: Vec<PreviewEntry>,
    /// Previews torn down by `ttl`, with the commit they stopped at: they
    /// stay down until their ref moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<ExpiredPreview>,
    /// When the refs were last listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_listed_time: Option<String>,
}

/// One live preview.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewEntry {
    /// The pull-request number, when the ref has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// The ref: `refs/pull/7/head`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub commit: String,
    pub namespace: String,
    /// The generated Application (in the Preview's namespace).
    pub application: String,
    /// The generated Application's Ready status: `True`, `False`, `Unknown`.
    pub ready: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the head last moved (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_since: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExpiredPreview {
    #[serde(rename = "ref")]
    pub reference: String,
    pub commit: String,
}

/// The condition types of a Preview's status.
pub mod preview_condition {
    pub const READY: &str = "Ready";
    pub const REFUSED: &str = "Refused";
}

impl Preview {
    /// The CRD, as `windlass crd` prints it and `deploy/crds/` holds it.
    pub fn crd_yaml() -> String {
        use kube::CustomResourceExt;
        let crd = Preview::crd();
        let mut text =
            String::from("# Generated by `windlass crd` from src/spec.rs: do not edit by hand.\n");
        text.push_str(&serde_saphyr::to_string(&crd).expect("the CRD serialises to YAML"));
        text
    }

    /// How often the refs are listed (default 1m).
    pub fn interval(&self) -> Result<Duration, DurationError> {
        self.spec
            .interval
            .as_deref()
            .map(parse_duration)
            .unwrap_or(Ok(Duration::from_secs(60)))
    }

    /// `None`: previews never expire.
    pub fn ttl(&self) -> Result<Option<Duration>, DurationError> {
        self.spec.ttl.as_deref().map(parse_duration).transpose()
    }

    pub fn max_previews(&self) -> usize {
        self.spec.max_previews.unwrap_or(10) as usize
    }

    /// The Pod Security level of preview namespaces (default `baseline`).
    pub fn pod_security(&self) -> &str {
        self.spec.pod_security.as_deref().unwrap_or("baseline")
    }
}

/// Go duration syntax, as `parse_duration` reads it.
const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The condition types of an Application's status (kstatus conventions):
/// `Ready` is always present; `Reconciling` and `Stalled` only while true;
/// `Drifted` only while live objects differ from the applied revision.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const DRIFTED: &str = "Drifted";
}

/// Why an Application is where it is: the `reason` of its Ready (and
/// Stalled) condition, of the Event a failure sends, and what the reconcile
/// metric counts it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The applied revision is live (and healthy).
    Succeeded,
    /// A sync is under way.
    Progressing,
    DependencyNotReady,
    /// The `secretRef` Secret could not be read or used.
    CredentialsFailed,
    /// The repository URL in the spec is not usable.
    SourceFailed,
    GitFailed,
    RenderFailed,
    /// A rendered object is outside `spec.restrictions` (a preview's
    /// cluster-scoped object, or one in another namespace).
    Restricted,
    PlanFailed,
    SyncFailed,
    HealthCheckFailed,
    /// A commit that failed and was rolled back is not applied again.
    HeldBack,
    /// Another writer (e.g. `windlass sync` by hand) holds the lock.
    Locked,
    /// Changes wait for `windlass reconcile`: automated sync is off.
    OutOfSync,
    /// A sync window forbids automated syncs now.
    SyncWindowClosed,
    /// Another field manager reverted every recent self-heal: windlass
    /// stopped fighting it.
    SelfHealStopped,
    /// The spec cannot be used as written (e.g. a sync window that cannot
    /// be read); only the user can help.
    InvalidSpec,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Succeeded => "Succeeded",
            Reason::Progressing => "Progressing",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::CredentialsFailed => "CredentialsFailed",
            Reason::SourceFailed => "SourceFailed",
            Reason::GitFailed => "GitFailed",
            Reason::RenderFailed => "RenderFailed",
            Reason::Restricted => "Restricted",
            Reason::PlanFailed => "PlanFailed",
            Reason::SyncFailed => "SyncFailed",
            Reason::HealthCheckFailed => "HealthCheckFailed",
            Reason::HeldBack => "HeldBack",
            Reason::Locked => "Locked",
            Reason::OutOfSync => "OutOfSync",
            Reason::SyncWindowClosed => "SyncWindowClosed",
            Reason::SelfHealStopped => "SelfHealStopped",
            Reason::InvalidSpec => "InvalidSpec",
        }
    }

    /// The `result` label of `windlass_reconcile_total`.
    pub fn metric_result(self) -> &'static str {
        match self {
            Reason::Succeeded | Reason::Progressing | Reason::OutOfSync => "success",
            Reason::DependencyNotReady | Reason::SyncWindowClosed => "skipped",
            _ => "failure",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The annotation `windlass reconcile` sets to ask for a reconcile now.
pub const REQUESTED_AT_ANNOTATION: &str = "windlass.dev/requested-at";
/// Set by the webhook receiver when a push moved an Application's source:
/// its next reconcile runs at once and asks the remote for its refs.
pub const SOURCE_CHANGED_ANNOTATION: &str = "windlass.dev/source-changed";

/// Set by `windlass reconcile --ignore-windows` to the same value as
/// [`REQUESTED_AT_ANNOTATION`]: that request (and only that one) syncs even
/// while a sync window is closed.
pub const IGNORE_WINDOWS_ANNOTATION: &str = "windlass.dev/ignore-windows";

/// On Applications a Preview generated, and on preview namespaces: the
/// Preview's name.
pub const PREVIEW_LABEL: &str = "windlass.dev/preview";

/// The finalizer that runs the deletion policy before an Application goes.
pub const FINALIZER: &str = "windlass.dev/cleanup";

impl Application {
    /// How often the controller checks source and cluster (default 1m).
    pub fn interval(&self) -> Result<Duration, DurationError> {
        self.spec
            .sync
            .interval
            .as_deref()
            .map(parse_duration)
            .unwrap_or(Ok(Duration::from_secs(60)))
    }

    /// The `Ready` condition, if the controller has set one.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
    }

    /// The CRD, as `windlass crd` prints it and `deploy/crds/` holds it.
    pub fn crd_yaml() -> String {
        use kube::CustomResourceExt;
        let crd = Application::crd();
        let mut text =
            String::from("# Generated by `windlass crd` from src/spec.rs: do not edit by hand.\n");
        text.push_str(&serde_saphyr::to_string(&crd).expect("the CRD serialises to YAML"));
        text
    }

    /// The namespace namespaced objects land in: `destination.namespace`,
    /// else the Application's own namespace, else `default`.
    pub fn destination_namespace(&self) -> String {
        self.spec
            .destination
            .namespace
            .clone()
            .or_else(|| self.metadata.namespace.clone())
            .unwrap_or_else(|| "default".to_string())
    }

    /// `<namespace>.<name>`: the identity written on every applied object.
    pub fn identity(&self) -> String {
        format!(
            "{}.{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The restrictions its render is checked against: `spec.restrictions`;
    /// for an Application a Preview generated (label `windlass.dev/preview`),
    /// always at least "destination namespace only", even if the field is
    /// missing (an older CRD prunes it), so a pull request can never reach
    /// beyond its namespace.
    pub fn effective_restrictions(&self) -> Option<Restrictions> {
        let generated = self
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(PREVIEW_LABEL));
        match (&self.spec.restrictions, generated) {
            (restrictions, false) => restrictions.clone(),
            (restrictions, true) => Some(Restrictions {
                destination_namespace_only: true,
                ..restrictions.clone().unwrap_or_default()
            }),
        }
    }

    pub fn history_limit(&self) -> u32 {
        self.spec.history_limit.unwrap_or(10)
    }

    pub fn health_timeout(&self) -> Result<Duration, DurationError> {
        self.spec
            .rollback
            .health_timeout
            .as_deref()
            .map(parse_duration)
            .unwrap_or(Ok(Duration::from_secs(300)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (examples: 90s, 5m, 1h30m)")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

/// Go's `time.ParseDuration` for non-negative durations: a sequence of
/// decimal numbers with units `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |reason: &str| DurationError {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| error("a number needs a unit"))?;
        if number_end == 0 {
            return Err(error("expected a number"));
        }
        let number: f64 = rest[..number_end]
            .parse()
            .map_err(|_| error("bad number"))?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(error("a number needs a unit")),
            other => return Err(error(&format!("unknown unit `{other}`"))),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("62h"), Ok(Duration::from_secs(62 * 3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "m", "5 minutes", "-5s", "5d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("5d")
                .unwrap_err()
                .to_string()
                .contains("unknown unit `d`")
        );
    }

    #[test]
    fn an_application_reads_from_yaml_with_defaults() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": "guestbook", "namespace": "team-a" },
            "spec": {
                "source": { "repoURL": "https://git.example.com/deploy.git", "ref": "main", "path": "apps/guestbook" },
                "environment": "production",
                "values": { "replicas": 3 },
                "sync": { "prune": true, "interval": "1m" },
            }
        }))
        .unwrap();
        assert_eq!(app.spec.source.reference.as_deref(), Some("main"));
        assert_eq!(app.destination_namespace(), "team-a");
        assert_eq!(app.identity(), "team-a.guestbook");
        assert_eq!(app.history_limit(), 10);
        assert_eq!(app.health_timeout(), Ok(Duration::from_secs(300)));
        assert!(app.spec.sync.prune && !app.spec.sync.self_heal);
        assert!(app.spec.notifications.is_empty());
        assert_eq!(app.effective_restrictions(), None);
    }

    #[test]
    fn the_renderer_is_auto_unless_named() {
        let source = |renderer: Option<&str>| {
            let mut json = serde_json::json!({ "repoURL": "https://git.example.com/d.git" });
            if let Some(renderer) = renderer {
                json["renderer"] = renderer.into();
            }
            serde_json::from_value::<Source>(json)
        };
        let auto = source(None).unwrap();
        assert_eq!(auto.renderer, Renderer::Auto);
        assert_eq!(auto.renderer.engine(), None);
        // Not written when auto: existing manifests read back unchanged.
        assert!(
            serde_json::to_value(&auto)
                .unwrap()
                .get("renderer")
                .is_none()
        );
        for (name, engine) in [
            ("plain", crate::render::Engine::Plain),
            ("windlass-chart", crate::render::Engine::WindlassChart),
            ("kustomize", crate::render::Engine::Kustomize),
            ("helm", crate::render::Engine::Helm),
        ] {
            let named = source(Some(name)).unwrap();
            assert_eq!(named.renderer.engine().as_ref(), Some(&engine));
            assert_eq!(engine.name(), name);
            assert_eq!(serde_json::to_value(&named).unwrap()["renderer"], name);
        }
        let error = source(Some("jsonnet")).unwrap_err().to_string();
        assert!(error.contains("unknown variant `jsonnet`"), "{error}");
    }

    #[test]
    fn notifications_read_with_kebab_case_events() {
        let spec: ApplicationSpec = serde_json::from_value(serde_json::json!({
            "source": { "repoURL": "https://git.example.com/deploy.git" },
            "notifications": [
                { "provider": "slack", "secretRef": { "name": "slack-hook" },
                  "events": ["sync-failed", "drift-detected"],
                  "template": { "configMapRef": { "name": "messages" } } },
                { "provider": "gitlab", "secretRef": { "name": "gitlab-token" },
                  "apiURL": "https://gitlab.example.com/api/v4" },
            ]
        }))
        .unwrap();
        let slack = &spec.notifications[0];
        assert_eq!(slack.provider, NotificationProvider::Slack);
        assert_eq!(
            slack.events,
            [
                NotificationEvent::SyncFailed,
                NotificationEvent::DriftDetected
            ]
        );
        assert_eq!(
            slack.template.as_ref().unwrap().config_map_ref.name,
            "messages"
        );
        assert_eq!(
            spec.notifications[1].api_url.as_deref(),
            Some("https://gitlab.example.com/api/v4")
        );
        let unknown = serde_json::from_value::<Notification>(serde_json::json!({
            "provider": "slack", "secretRef": { "name": "s" }, "events": ["synced"]
        }));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown variant `synced`")
        );
    }

    #[test]
    fn a_generated_preview_application_is_always_restricted() {
        let app = |labels: serde_json::Value, restrictions: serde_json::Value| -> Application {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "windlass.dev/v1alpha1",
                "kind": "Application",
                "metadata": { "name": "web-pr-7", "namespace": "team-a", "labels": labels },
                "spec": { "source": { "repoURL": "https://x/y.git" }, "restrictions": restrictions },
            }))
            .unwrap()
        };
        let preview = serde_json::json!({ "windlass.dev/preview": "web" });
        // The field pruned (an older CRD) or turned off: still confined.
        for restrictions in [
            serde_json::Value::Null,
            serde_json::json!({ "allowKinds": ["Ingress"] }),
        ] {
            let effective = app(preview.clone(), restrictions)
                .effective_restrictions()
                .unwrap();
            assert!(effective.destination_namespace_only);
        }
        let kept = app(preview, serde_json::json!({ "allowKinds": ["Ingress"] }));
        assert_eq!(
            kept.effective_restrictions().unwrap().allow_kinds,
            ["Ingress"]
        );
        // Other Applications: as their spec says.
        let plain = app(
            serde_json::json!({}),
            serde_json::json!({ "allowKinds": ["X"] }),
        );
        assert!(
            !plain
                .effective_restrictions()
                .unwrap()
                .destination_namespace_only
        );
    }
}
