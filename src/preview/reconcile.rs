//! The Preview loop: a `Controller<Preview>` that owns the generated
//! Applications and their namespaces.
//!
//! ```text
//!   Preview ─► finalizer ─┬─ deleted ─► delete its Applications, wait until they have
//!                         │             pruned (their finalizer), delete its namespaces
//!                         └─ live ────► list the repository's refs (shared: one listing
//!                                       per repository, credentials and interval slot);
//!                                       with a provider, its open pull requests (same)
//!                                       plan (pure) ─► create/move: fetch the commit, create
//!                                       the namespace (labelled), apply the Application
//!                                       ─► delete: Applications whose ref went or expired
//!                                       ─► commit statuses (provider), once per change
//!                                       ─► namespaces nothing uses any more: delete
//!                                       ─► status.previews, Ready, Refused
//!   requeue: the start of the next interval slot, so that previews sharing a repository
//!   and an interval share one listing; an owned Application's change wakes it at once.
//!   A pull-request webhook (`windlass.dev/source-changed` set by the receiver, see
//!   controller::wake) wakes it too, and that pass lists afresh instead of using the slot's.
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::OnceCell;
use tracing::{info, instrument, warn};

use super::generate::{
    self, POD_SECURITY_LABEL, PREVIEW_LABEL, generated_application, label_value,
};
use super::naming::{PreviewRef, RefPattern};
use super::plan::{self, Facts};
use super::provider::{self, ApiClient, CommitState, Provider, ProviderError, PullRequest};
use crate::cluster::{ApiError, explain};
use crate::source::{self, Credentials, RemoteRef, Repo, SourceCache, SourceOptions};
use crate::spec::{
    Application, Preview, PreviewEntry, PreviewStatus, Reason, SOURCE_CHANGED_ANNOTATION,
    condition, preview_condition,
};

/// The finalizer that tears a deleted Preview's previews down.
pub const FINALIZER: &str = "windlass.dev/previews";
/// The field manager of generated Applications and preview namespaces.
pub const FIELD_MANAGER: &str = "windlass-previews";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Finalizer(Box<finalizer::Error<Error>>),
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("waiting for {0} generated Application(s) to uninstall")]
    Uninstalling(usize),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |e| Error::Api {
        what,
        source: e.into(),
    }
}

/// How the Preview loop runs.
#[derive(Debug, Clone)]
pub struct PreviewOptions {
    /// The mirror cache: the Application controller's, so that the commit a
    /// generated Application is pinned to is already there.
    pub source: SourceOptions,
    /// Only Previews in this namespace (default: all).
    pub watch_namespace: Option<String>,
    /// Previews reconciled at once.
    pub concurrency: u16,
}

/// The running loop; dropping it stops the loop.
pub struct PreviewLoop(tokio::task::JoinHandle<()>);

impl Drop for PreviewLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts [`run`] on the runtime; the loop stops when the handle drops.
pub fn spawn(client: kube::Client, options: PreviewOptions) -> PreviewLoop {
    PreviewLoop(tokio::spawn(async move {
        run(client, options).await;
    }))
}

/// Runs the Preview loop until the task is dropped. Without the Preview CRD
/// it waits for it (checking every minute), so a cluster without previews
/// costs one request a minute.
pub async fn run(client: kube::Client, options: PreviewOptions) {
    let previews: Api<Preview> = match &options.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut warned = false;
    while let Err(error) = previews.list(&ListParams::default().limit(1)).await {
        if !warned {
            warn!(
                error = %explain(&error),
                "previews are off: cannot list previews.windlass.dev (install the CRD: windlass \
                 crd | kubectl apply -f -); checking again every minute"
            );
            warned = true;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    info!("watching Previews");
    let applications: Api<Application> = match &options.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let context = Arc::new(Context {
        client,
        cache: SourceCache::new(options.source),
        listings: Mutex::default(),
        pulls: Mutex::default(),
        api: std::sync::OnceLock::new(),
        posted: Mutex::default(),
        wakes: Mutex::default(),
    });
    Controller::new(previews, watcher::Config::default().any_semantic())
        .owns(
            applications,
            watcher::Config::default()
                .labels(PREVIEW_LABEL)
                .any_semantic(),
        )
        .with_config(controller::Config::default().concurrency(options.concurrency.max(1)))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                match error {
                    controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "preview controller"),
                }
            }
        })
        .await;
}

type RefsListing = Arc<OnceCell<Result<Vec<RemoteRef>, source::Error>>>;
type PullsListing = Arc<OnceCell<Result<Vec<PullRequest>, ProviderError>>>;

/// A listing's key: repository, credentials (Secret), interval in ms.
type ListingKey = (String, String, u64);

/// What every Preview reconcile shares.
struct Context {
    client: kube::Client,
    cache: SourceCache,
    /// Per (repository, credentials, interval): the slot listed and its refs.
    listings: Slots<RefsListing>,
    /// Per (pulls URL, token Secret, interval): the open pull requests.
    pulls: Slots<PullsListing>,
    /// The Git host API client, made on first use.
    api: std::sync::OnceLock<Result<Arc<ApiClient>, String>>,
    /// Commit statuses posted: (Preview uid, commit) → state.
    posted: Mutex<HashMap<(String, String), CommitState>>,
    /// Per Preview uid: the last wake annotation a fresh listing served.
    wakes: Mutex<HashMap<String, String>>,
}

/// A listing shared for one interval slot.
struct Slot<T> {
    /// now / interval when it was made.
    number: u64,
    /// The webhook wake it was made for, if one.
    wake: Option<String>,
    value: T,
}

type Slots<T> = Mutex<HashMap<ListingKey, Slot<T>>>;

/// The shared value of `key` for the current interval slot (the key ends
/// in the interval): the same one for every caller until the slot ends, or
/// until a caller woken by a webhook (`wake`, the annotation's value) asks
/// for a fresh one. Callers woken by the same delivery share that one, as
/// do the slot's later callers.
fn in_slot<T: Default + Clone>(map: &Slots<T>, key: ListingKey, wake: Option<&str>) -> T {
    let number = now_ms() / key.2;
    let mut map = map.lock().expect("slot cache lock");
    let entry = map.entry(key).or_insert_with(|| Slot {
        number,
        wake: wake.map(str::to_string),
        value: T::default(),
    });
    let woken = wake.is_some_and(|w| entry.wake.as_deref() != Some(w));
    if entry.number != number || woken {
        *entry = Slot {
            number,
            wake: wake.map(str::to_string),
            value: T::default(),
        };
    }
    entry.value.clone()
}

/// The wake annotation's value, when no fresh listing has served it yet.
fn unhandled_wake<'a>(annotation: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    annotation.filter(|value| Some(*value) != handled)
}

impl Context {
    /// The repository's refs for this interval slot: listed once, shared by
    /// every Preview of the repository (same credentials, same interval).
    async fn refs(
        &self,
        repo: &Repo,
        credentials_key: &str,
        interval: Duration,
        wake: Option<&str>,
    ) -> Result<Vec<RemoteRef>, source::Error> {
        let key = (
            repo.url.cache_key().to_string(),
            credentials_key.to_string(),
            interval.as_millis().max(1) as u64,
        );
        let listing: RefsListing = in_slot(&self.listings, key, wake);
        listing
            .get_or_init(|| self.cache.list_refs(repo, "refs/**"))
            .await
            .clone()
    }

    /// The open pull requests for this interval slot, shared like refs.
    async fn pull_requests(
        &self,
        provider: &Provider,
        token: Option<&source::Secret>,
        token_key: &str,
        interval: Duration,
        wake: Option<&str>,
    ) -> Result<Vec<PullRequest>, ProviderError> {
        let api = self.api_client().map_err(|reason| ProviderError::Request {
            url: provider.pulls_url(),
            reason,
        })?;
        let key = (
            provider.pulls_url(),
            token_key.to_string(),
            interval.as_millis().max(1) as u64,
        );
        let listing: PullsListing = in_slot(&self.pulls, key, wake);
        listing
            .get_or_init(|| api.pulls(provider, token))
            .await
            .clone()
    }

    /// The webhook wake (the annotation's value) this Preview has not had
    /// a fresh listing for; remembers that this pass serves it.
    fn take_wake(&self, preview: &Preview) -> Option<String> {
        let annotation = preview
            .annotations()
            .get(SOURCE_CHANGED_ANNOTATION)
            .map(String::as_str);
        let uid = preview.uid().unwrap_or_default();
        let mut wakes = self.wakes.lock().expect("wakes lock");
        match unhandled_wake(annotation, wakes.get(&uid).map(String::as_str)) {
            Some(value) => {
                info!(wake = %value, "woken by a webhook: listing afresh");
                wakes.insert(uid, value.to_string());
                Some(value.to_string())
            }
            None => None,
        }
    }

    fn api_client(&self) -> Result<Arc<ApiClient>, String> {
        self.api
            .get_or_init(|| ApiClient::new(Duration::from_secs(30)).map(Arc::new))
            .clone()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// From now to the start of the next interval slot (plus a little, so the
/// clock has surely crossed it).
fn until_next_slot(interval: Duration) -> Duration {
    let interval_ms = interval.as_millis().max(1) as u64;
    let into = now_ms() % interval_ms;
    Duration::from_millis(interval_ms - into + 50)
}

async fn reconcile(preview: Arc<Preview>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = preview.namespace().unwrap_or_default();
    let api: Api<Preview> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, preview, |event| async {
        match event {
            finalizer::Event::Apply(preview) => apply(preview, context.clone()).await,
            finalizer::Event::Cleanup(preview) => cleanup(preview, context.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(preview: Arc<Preview>, error: &Error, _context: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        preview.namespace().unwrap_or_default(),
        preview.name_any()
    );
    match error {
        Error::Finalizer(inner)
            if matches!(
                **inner,
                finalizer::Error::CleanupFailed(Error::Uninstalling(_))
            ) =>
        {
            info!(preview = %key, "{error}");
            Action::requeue(Duration::from_secs(2))
        }
        _ => {
            warn!(preview = %key, error = %crate::cluster::chain(error), "preview reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// The Preview's settings, checked: or the message saying what is wrong.
struct Settings {
    interval: Duration,
    ttl: Option<Duration>,
    pattern: RefPattern,
}

fn settings(preview: &Preview) -> Result<Settings, String> {
    Ok(Settings {
        interval: preview
            .interval()
            .map_err(|e| format!("spec.interval: {e}"))?
            .max(Duration::from_secs(1)),
        ttl: preview.ttl().map_err(|e| format!("spec.ttl: {e}"))?,
        pattern: RefPattern::parse(&preview.spec.source.ref_pattern)
            .map_err(|e| format!("spec.source.refPattern: {e}"))?,
    })
}

/// The previews a pass found, and what stands in their way.
#[derive(Default)]
struct Pass {
    entries: Vec<PreviewEntry>,
    problems: Vec<String>,
    notes: Vec<String>,
    /// `<application> (<ref>): <why>` for each refused preview.
    refused: Vec<String>,
    expired: Vec<crate::spec::ExpiredPreview>,
}

/// Why a pass stopped before planning: the Ready condition it leaves, and
/// when to try again. The previews stay as they are.
struct Stop {
    reason: String,
    message: String,
    then: Action,
}

impl Stop {
    fn new(reason: &str, message: impl Into<String>, then: Action) -> Stop {
        Stop {
            reason: reason.to_string(),
            message: message.into(),
            then,
        }
    }
}

/// What a pass learned from git and the Git host.
struct Sources {
    repo: Repo,
    /// The refs the pattern takes (before the provider's filter).
    listed: Vec<PreviewRef>,
    /// The provider, its token, its open pull requests.
    provider: Option<(Provider, Option<source::Secret>, Vec<PullRequest>)>,
}

impl Pass {
    fn add(&mut self, (entry, refused): (PreviewEntry, bool)) {
        if refused {
            self.refused.push(format!(
                "{} ({}): {}",
                entry.application,
                entry.reference,
                entry.message.clone().unwrap_or_default()
            ));
        }
        self.entries.push(entry);
    }
}

#[instrument(skip_all, fields(preview = %format!("{}/{}", preview.namespace().unwrap_or_default(), preview.name_any())))]
async fn apply(preview: Arc<Preview>, context: Arc<Context>) -> Result<Action, Error> {
    let listing = match settings(&preview) {
        Err(message) => Err(Stop::new("InvalidSpec", message, Action::await_change())),
        Ok(settings) => list(&preview, &context, &settings)
            .await
            .map(|listing| (settings, listing)),
    };
    let (settings, listing) = match listing {
        Ok(found) => found,
        Err(stop) => {
            let status = failed(&stop.reason, &stop.message, &preview);
            write_status(&preview, &context, status).await?;
            return Ok(stop.then);
        }
    };
    let namespace = preview.namespace().unwrap_or_default();
    let applications: Api<Application> = Api::namespaced(context.client.clone(), &namespace);
    let owned = owned_applications(&preview, &applications).await?;
    let listed = match &listing.provider {
        None => listing.listed,
        Some((provider, _, pulls)) => {
            let previewed: BTreeSet<String> = owned
                .iter()
                .filter_map(generate::existing_preview)
                .map(|e| e.ref_name)
                .collect();
            provider::only_wanted(listing.listed, provider, pulls, &previewed)
        }
    };
    let existing: Vec<plan::ExistingPreview> = owned
        .iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .filter_map(generate::existing_preview)
        .collect();
    let expired = preview
        .status
        .as_ref()
        .map(|s| s.expired.clone())
        .unwrap_or_default();
    let name_of = |r: &PreviewRef| generate::application_name(&preview, r);
    let decided = plan::plan(&Facts {
        listed: &listed,
        existing: &existing,
        expired: &expired,
        now: Timestamp::now(),
        ttl: settings.ttl,
        max_previews: preview.max_previews(),
        name: &name_of,
    });

    let mut pass = Pass {
        expired: decided.expired.clone(),
        ..Pass::default()
    };
    let mut crd_checked = false;
    for live in &decided.live {
        let current = owned
            .iter()
            .find(|a| a.name_any() == generate::application_name(&preview, &live.preview));
        if current.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
            pass.notes.push(format!(
                "{}: waiting for the previous Application to finish uninstalling",
                live.preview.ref_name
            ));
            continue;
        }
        let desired = generated_application(&preview, live);
        if current.is_some_and(|c| !generate::differs(c, &desired)) {
            if let Err(problem) = ensure_fetched(&context, &listing.repo, live).await {
                pass.problems.push(problem);
            }
            pass.add(entry(&preview, live, current));
            continue;
        }
        if !crd_checked {
            // Safe either way (generated Applications are confined by
            // their label too), but allowKinds would be lost: say so.
            if let Err(message) = application_crd_has_restrictions(&context.client).await {
                pass.problems.push(message);
            }
            crd_checked = true;
        }
        match write_preview(&preview, &context, &listing.repo, live, current.is_some()).await {
            Ok(live) => pass.add(entry(&preview, &live, current)),
            Err(problem) => pass.problems.push(problem),
        }
    }
    delete_previews(&decided.delete, &owned, &applications, &mut pass).await;
    for reference in &decided.waiting {
        pass.notes
            .push(format!("{reference}: waiting, maxPreviews reached"));
    }
    for (reference, other) in &decided.collisions {
        pass.problems.push(format!(
            "{reference}: its preview's name is taken by {other}; rename the branch"
        ));
    }
    if let Some((provider, token, _)) = &listing.provider
        && provider.commit_status
    {
        post_statuses(&preview, &context, provider, token.as_ref(), &mut pass).await;
    }
    let wanted: BTreeSet<String> = pass.entries.iter().map(|e| e.namespace.clone()).collect();
    let in_use: BTreeSet<String> = owned.iter().map(|a| a.destination_namespace()).collect();
    delete_unused_namespaces(&context.client, &preview, &wanted, &in_use, &mut pass).await;

    write_status(&preview, &context, passed(&preview, pass)).await?;
    Ok(Action::requeue(until_next_slot(settings.interval)))
}

/// Lists the repository's refs (shared per slot) and, with a provider, the
/// open pull requests.
async fn list(preview: &Preview, context: &Context, settings: &Settings) -> Result<Sources, Stop> {
    let retry = || Action::requeue(until_next_slot(settings.interval));
    let namespace = preview.namespace().unwrap_or_default();
    let source = &preview.spec.source;
    let credentials = match &source.secret_ref {
        Some(secret) => {
            source::auth::read_credentials_secret(&context.client, &namespace, &secret.name)
                .await
                .map_err(|e| {
                    let message = crate::cluster::chain(&e);
                    Stop::new(Reason::CredentialsFailed.as_str(), message, retry())
                })?
        }
        None => Credentials::None,
    };
    let repo = Repo::new(&source.repo_url, credentials).map_err(|e| {
        Stop::new(
            Reason::SourceFailed.as_str(),
            e.to_string(),
            Action::await_change(),
        )
    })?;
    let credentials_key = source
        .secret_ref
        .as_ref()
        .map(|s| format!("{namespace}/{}", s.name))
        .unwrap_or_default();
    let wake = context.take_wake(preview);
    let refs = context
        .refs(&repo, &credentials_key, settings.interval, wake.as_deref())
        .await
        .map_err(|e| Stop::new(Reason::GitFailed.as_str(), format!("git: {e}"), retry()))?;
    let listed = refs
        .iter()
        .filter_map(|r| PreviewRef::new(&settings.pattern, &r.name, &r.commit.to_string()))
        .collect();
    let provider = match scm_provider(preview, context)
        .await
        .map_err(|message| Stop::new("ProviderFailed", message, retry()))?
    {
        None => None,
        Some((provider, token, token_key)) => {
            let pulls = context
                .pull_requests(
                    &provider,
                    token.as_ref(),
                    &token_key,
                    settings.interval,
                    wake.as_deref(),
                )
                .await
                .map_err(|e| Stop::new("ProviderFailed", e.to_string(), retry()))?;
            Some((provider, token, pulls))
        }
    };
    Ok(Sources {
        repo,
        listed,
        provider,
    })
}

/// Brings one preview up or moves it: fetches its commit into the mirror the
/// Application controller reads (so resolving the pinned commit needs no
/// network), creates its namespace, applies its Application. Returns the
/// preview as written (a ref that moved since the listing is followed).
async fn write_preview(
    preview: &Preview,
    context: &Context,
    repo: &Repo,
    live: &plan::LivePreview,
    exists: bool,
) -> Result<plan::LivePreview, String> {
    let mut live = live.clone();
    let resolved = context
        .cache
        .resolve(repo, &live.preview.ref_name)
        .await
        .map_err(|e| format!("{}: git: {e}", live.preview.ref_name))?;
    if resolved.commit.to_string() != live.preview.commit {
        live.preview.commit = resolved.commit.to_string();
        live.head_since = Timestamp::now();
    }
    let desired = generated_application(preview, &live);
    let destination = desired.destination_namespace();
    ensure_namespace(&context.client, preview, &live.preview, &destination).await?;
    let name = desired.name_any();
    let applications: Api<Application> = Api::namespaced(
        context.client.clone(),
        &preview.namespace().unwrap_or_default(),
    );
    applications
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|e| format!("applying Application {name}: {}", explain(&e)))?;
    info!(
        application = %name,
        reference = %live.preview.ref_name,
        commit = %live.preview.commit,
        namespace = %destination,
        "preview {}", if exists { "updated" } else { "created" }
    );
    Ok(live)
}

/// Makes sure the mirror holds an unchanged preview's commit (a restarted
/// controller's cache may be empty, and a fork's commit is reachable only
/// from its pull-request ref): a local check, a fetch only when missing.
async fn ensure_fetched(
    context: &Context,
    repo: &Repo,
    live: &plan::LivePreview,
) -> Result<(), String> {
    let failed = |e: source::Error| format!("{}: git: {e}", live.preview.ref_name);
    let Ok(commit) = git2::Oid::from_str(&live.preview.commit) else {
        return Ok(());
    };
    if !context
        .cache
        .has_commit(repo, commit)
        .await
        .map_err(failed)?
    {
        info!(reference = %live.preview.ref_name, %commit, "fetching the preview's commit into the mirror");
        context
            .cache
            .resolve(repo, &live.preview.ref_name)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Deletes the generated Applications the plan tears down (their finalizer
/// prunes; the namespace goes once they are gone).
async fn delete_previews(
    delete: &[(String, plan::Teardown)],
    owned: &[Application],
    applications: &Api<Application>,
    pass: &mut Pass,
) {
    for (name, why) in delete {
        let deleting = owned
            .iter()
            .find(|a| &a.name_any() == name)
            .is_none_or(|a| a.metadata.deletion_timestamp.is_some());
        if deleting {
            continue;
        }
        info!(application = %name, "deleting preview: {why}");
        match applications.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => pass
                .problems
                .push(format!("deleting Application {name}: {}", explain(&e))),
        }
    }
}

/// The Preview's SCM provider with its token (and the token Secret's name,
/// to key shared listings), if it has one; else the message saying why not.
async fn scm_provider(
    preview: &Preview,
    context: &Context,
) -> Result<Option<(Provider, Option<source::Secret>, String)>, String> {
    let Some(spec) = &preview.spec.provider else {
        return Ok(None);
    };
    let provider =
        Provider::from_spec(spec, &preview.spec.source.repo_url).map_err(|e| e.to_string())?;
    let Some(secret) = &spec.token_secret_ref else {
        return Ok(Some((provider, None, String::new())));
    };
    let namespace = preview.namespace().unwrap_or_default();
    let name = format!("{namespace}/{}", secret.name);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(context.client.clone(), &namespace);
    let found = secrets
        .get(&secret.name)
        .await
        .map_err(|e| format!("reading the provider token Secret {name}: {}", explain(&e)))?;
    let token = found
        .data
        .unwrap_or_default()
        .remove("token")
        .and_then(|v| String::from_utf8(v.0).ok())
        .map(|t| source::Secret::new(t.trim().to_string()))
        .ok_or_else(|| format!("the provider token Secret {name} has no key `token`"))?;
    Ok(Some((provider, Some(token), name)))
}

/// Posts each preview's state as a commit status when it changed since the
/// last post (remembered in memory: a restart posts each once more).
async fn post_statuses(
    preview: &Preview,
    context: &Context,
    provider: &Provider,
    token: Option<&source::Secret>,
    pass: &mut Pass,
) {
    let Ok(api) = context.api_client() else {
        return; // the pull-request listing already failed and said why
    };
    let uid = preview.uid().unwrap_or_default();
    for entry in &pass.entries {
        let state = provider::commit_state(&entry.ready);
        let key = (uid.clone(), entry.commit.clone());
        if context.posted.lock().expect("posted lock").get(&key) == Some(&state) {
            continue;
        }
        let description = match state {
            CommitState::Pending => format!("preview {} is being deployed", entry.namespace),
            CommitState::Success => format!("preview {} is ready", entry.namespace),
            CommitState::Failure => entry
                .message
                .clone()
                .unwrap_or_else(|| "the preview failed".into())
                .chars()
                .take(140)
                .collect(),
        };
        match api
            .post_status(
                provider,
                token,
                &entry.commit,
                state,
                entry.url.as_deref(),
                &description,
            )
            .await
        {
            Ok(()) => {
                context
                    .posted
                    .lock()
                    .expect("posted lock")
                    .insert(key, state);
            }
            Err(e) => pass
                .notes
                .push(format!("{}: commit status: {e}", entry.reference)),
        }
    }
}

/// The generated Applications this Preview owns (label, and owner by uid).
async fn owned_applications(
    preview: &Preview,
    applications: &Api<Application>,
) -> Result<Vec<Application>, Error> {
    let selector = format!("{PREVIEW_LABEL}={}", label_value(&preview.name_any()));
    let list = applications
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("listing the generated Applications"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|a| generate::owned_by(a, preview))
        .collect())
}

/// One `status.previews` entry, Ready from the generated Application; and
/// whether that Application was refused for its restrictions.
fn entry(
    preview: &Preview,
    live: &plan::LivePreview,
    current: Option<&Application>,
) -> (PreviewEntry, bool) {
    let r = &live.preview;
    // A status describes the commit it was reached at only when that is ours.
    let ready = current
        .filter(|a| a.spec.source.reference.as_deref() == Some(r.commit.as_str()))
        .filter(|a| a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation)
        .and_then(|a| a.condition(condition::READY));
    let refused = ready.is_some_and(|c| c.reason == Reason::Restricted.as_str());
    let entry = PreviewEntry {
        number: r.number.map(|n| n as i64),
        reference: r.ref_name.clone(),
        commit: r.commit.clone(),
        namespace: generate::destination_namespace(preview, r),
        application: generate::application_name(preview, r),
        ready: ready.map(|c| c.status.clone()).unwrap_or("Unknown".into()),
        message: ready
            .filter(|c| c.status != "True")
            .map(|c| c.message.clone()),
        url: generate::preview_url(preview, r),
        head_since: Some(live.head_since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    };
    (entry, refused)
}

/// Whether the installed Application CRD keeps `spec.restrictions`: an
/// older CRD prunes the field, and with it `allowKinds` (the
/// `windlass.dev/preview` label still confines the Application).
async fn application_crd_has_restrictions(client: &kube::Client) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("applications.windlass.dev")
        .await
        .map_err(|e| format!("reading the Application CRD: {}", explain(&e)))?;
    let has = crd.spec.versions.iter().any(|v| {
        v.name == "v1alpha1"
            && v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| s.properties.as_ref()?.get("spec")?.properties.as_ref())
                .is_some_and(|p| p.contains_key("restrictions"))
    });
    if has {
        Ok(())
    } else {
        Err(
            "the installed Application CRD has no spec.restrictions (it is older than this \
             windlass): previews stay confined to their namespaces, but allowKinds is lost; \
             update the CRDs (windlass crd | kubectl apply --server-side -f -)"
                .into(),
        )
    }
}

/// Creates the preview's namespace, labelled as this Preview's (and with its
/// Pod Security level); refuses a namespace that exists and is not ours.
async fn ensure_namespace(
    client: &kube::Client,
    preview: &Preview,
    r: &PreviewRef,
    name: &str,
) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ownership = generate::ownership_labels(preview);
    let labels = generate::namespace_labels(preview, r);
    match namespaces.get_opt(name).await {
        Ok(Some(existing)) => {
            let ours = ownership
                .iter()
                .all(|(k, v)| existing.labels().get(k) == Some(v));
            if !ours {
                return Err(format!(
                    "{}: namespace {name} exists and is not this Preview's (no labels {}): \
                     choose another template.destination.namespace",
                    r.ref_name,
                    selector(&ownership)
                ));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(format!(
                    "{}: namespace {name} is still being deleted; the preview comes up when it \
                     is gone",
                    r.ref_name
                ));
            }
            let level = &labels[POD_SECURITY_LABEL];
            if existing.labels().get(POD_SECURITY_LABEL) != Some(level) {
                let patch =
                    serde_json::json!({ "metadata": { "labels": { POD_SECURITY_LABEL: level } } });
                namespaces
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| format!("labelling namespace {name}: {}", explain(&e)))?;
            }
            Ok(())
        }
        Ok(None) => {
            let namespace = Namespace {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            };
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match namespaces.create(&params, &namespace).await {
                Ok(_) => {
                    info!(namespace = %name, "created the preview namespace");
                    Ok(())
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                Err(e) => Err(format!("creating namespace {name}: {}", explain(&e))),
            }
        }
        Err(e) => Err(format!("reading namespace {name}: {}", explain(&e))),
    }
}

/// `k=v,k=v`: a label selector.
fn selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Deletes this Preview's namespaces that nothing wants or uses any more.
async fn delete_unused_namespaces(
    client: &kube::Client,
    preview: &Preview,
    wanted: &BTreeSet<String>,
    in_use: &BTreeSet<String>,
    pass: &mut Pass,
) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labelled = match namespaces
        .list(&ListParams::default().labels(&selector(&generate::ownership_labels(preview))))
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .map(|n| n.name_any())
            .collect::<Vec<_>>(),
        Err(e) => {
            pass.problems
                .push(format!("listing preview namespaces: {}", explain(&e)));
            return;
        }
    };
    for name in plan::namespaces_to_delete(&labelled, wanted, in_use) {
        info!(namespace = %name, "deleting the preview namespace: its preview is gone");
        match namespaces.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => pass
                .problems
                .push(format!("deleting namespace {name}: {}", explain(&e))),
        }
    }
}

/// A deleted Preview: delete its Applications (their finalizer prunes their
/// objects), wait until they are gone, then delete its namespaces.
async fn cleanup(preview: Arc<Preview>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = preview.namespace().unwrap_or_default();
    let applications: Api<Application> = Api::namespaced(context.client.clone(), &namespace);
    let owned = owned_applications(&preview, &applications).await?;
    for application in &owned {
        if application.metadata.deletion_timestamp.is_none() {
            let name = application.name_any();
            match applications
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(api_error(format!("deleting Application {name}"))(e)),
            }
        }
    }
    if !owned.is_empty() {
        return Err(Error::Uninstalling(owned.len()));
    }
    let mut pass = Pass::default();
    delete_unused_namespaces(
        &context.client,
        &preview,
        &BTreeSet::new(),
        &BTreeSet::new(),
        &mut pass,
    )
    .await;
    if let Some(problem) = pass.problems.first() {
        warn!(problem = %problem, "removing preview namespaces");
    }
    context
        .wakes
        .lock()
        .expect("wakes lock")
        .remove(&preview.uid().unwrap_or_default());
    info!("the Preview was deleted: its previews are gone");
    Ok(Action::await_change())
}

/// A status for a Preview that could not list its refs (or is invalid):
/// the previews it had stay as they were.
fn failed(reason: &str, message: &str, preview: &Preview) -> PreviewStatus {
    let mut status = preview.status.clone().unwrap_or_default();
    status.observed_generation = preview.meta().generation;
    set_condition(
        &mut status.conditions,
        preview_condition::READY,
        "False",
        reason,
        message,
    );
    status
}

fn passed(preview: &Preview, pass: Pass) -> PreviewStatus {
    let mut status = preview.status.clone().unwrap_or_default();
    status.observed_generation = preview.meta().generation;
    status.count = pass.entries.len() as i64;
    status.expired = pass.expired;
    status.last_listed_time = Some(crate::sync::engine::now());
    let refused = pass.refused;
    status.previews = pass.entries;
    if refused.is_empty() {
        status
            .conditions
            .retain(|c| c.type_ != preview_condition::REFUSED);
    } else {
        set_condition(
            &mut status.conditions,
            preview_condition::REFUSED,
            "True",
            Reason::Restricted.as_str(),
            &refused.join("\n"),
        );
    }
    let ready_count = status.previews.iter().filter(|e| e.ready == "True").count();
    if pass.problems.is_empty() {
        let mut message = format!("{} previews, {ready_count} ready", status.count);
        for note in &pass.notes {
            message.push_str("; ");
            message.push_str(note);
        }
        set_condition(
            &mut status.conditions,
            preview_condition::READY,
            "True",
            Reason::Succeeded.as_str(),
            &message,
        );
    } else {
        set_condition(
            &mut status.conditions,
            preview_condition::READY,
            "False",
            Reason::SyncFailed.as_str(),
            &pass.problems.join("; "),
        );
    }
    status
}

/// Sets a condition; its transition time changes only with its status.
fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let now = Time(Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now;
            }
            existing.status = status.to_string();
            existing.reason = reason.to_string();
            existing.message = message.to_string();
        }
        None => conditions.push(Condition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
            observed_generation: None,
        }),
    }
}

/// Patches the status when it differs in anything but the listing time.
async fn write_status(
    preview: &Preview,
    context: &Context,
    status: PreviewStatus,
) -> Result<(), Error> {
    let old = preview.status.clone().unwrap_or_default();
    let same = PreviewStatus {
        last_listed_time: None,
        ..old.clone()
    } == PreviewStatus {
        last_listed_time: None,
        ..status.clone()
    };
    if same {
        return Ok(());
    }
    let api: Api<Preview> = Api::namespaced(
        context.client.clone(),
        &preview.namespace().unwrap_or_default(),
    );
    // Server-side apply: a field this manager no longer sets (an emptied
    // `expired`) is removed.
    let patch = serde_json::json!({
        "apiVersion": Preview::api_version(&()),
        "kind": Preview::kind(&()),
        "status": status,
    });
    api.patch_status(
        &preview.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(api_error("writing the Preview's status"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_served_once() {
        assert_eq!(unhandled_wake(None, None), None);
        assert_eq!(
            unhandled_wake(Some("pr-7-opened@t1"), None),
            Some("pr-7-opened@t1")
        );
        assert_eq!(
            unhandled_wake(Some("pr-7-opened@t1"), Some("pr-7-opened@t1")),
            None
        );
        assert_eq!(
            unhandled_wake(Some("pr-8-opened@t2"), Some("pr-7-opened@t1")),
            Some("pr-8-opened@t2")
        );
    }

    #[test]
    fn a_slot_is_shared_until_a_new_wake_asks_for_a_fresh_one() {
        let map = Slots::<Arc<Mutex<u32>>>::default();
        // A long interval: the slot does not end during the test.
        let key = || ("repo".to_string(), String::new(), 3_600_000);
        let value = |wake| *in_slot(&map, key(), wake).lock().unwrap();
        *in_slot(&map, key(), None).lock().unwrap() = 1;
        assert_eq!(value(None), 1, "shared");
        assert_eq!(value(Some("pr-7-opened@t1")), 0, "a fresh value for a wake");
        *in_slot(&map, key(), None).lock().unwrap() = 2;
        assert_eq!(value(None), 2, "the fresh one is shared");
        assert_eq!(
            value(Some("pr-7-opened@t1")),
            2,
            "and by the other Previews the same delivery woke"
        );
        assert_eq!(value(Some("pr-8-opened@t2")), 0, "another delivery: fresh");
    }
}
