//! Pull-request previews against the real local control plane and a bare
//! repository served by `git daemon` on loopback. Each test runs its own
//! `windlass controller` (Applications and Previews) watching only the
//! test's namespace; each Preview is named after that namespace, so the
//! preview namespaces (`<preview>-pr-<n>`, cluster-wide) never collide.

mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use support::git::{ServedRepo, TempDir, free_port, git};
use support::{configmap, eventually, windlass, windlass_expect, with_namespace};
use windlass::spec::{Application, Preview};

const LIMIT: Duration = Duration::from_secs(90);

/// A `windlass controller` process for one namespace; killed on drop.
struct RunningController {
    child: Child,
    log: PathBuf,
    /// Serves /metrics, /readyz and (when enabled) /hooks on 127.0.0.1.
    port: u16,
    _dir: TempDir,
}

impl RunningController {
    fn start(namespace: &str) -> RunningController {
        RunningController::start_with(namespace, None)
    }

    /// With `webhook_secret`, the webhook receivers are on.
    fn start_with(namespace: &str, webhook_secret: Option<&str>) -> RunningController {
        let dir = TempDir::new("previews-controller");
        let log = dir.path().join("controller.log");
        let port = free_port();
        let mut command = windlass();
        command
            .args([
                "controller",
                "--watch-namespace",
                namespace,
                "--http-address",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(dir.path().join("git"));
        if let Some(secret) = webhook_secret {
            let file = dir.path().join("webhook-secret");
            std::fs::write(&file, secret).unwrap();
            command.arg("--webhook-secret-file").arg(file);
        }
        let child = command
            .env("RUST_LOG", "windlass=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting windlass controller");
        RunningController {
            child,
            log,
            port,
            _dir: dir,
        }
    }

    /// POSTs a GitHub `pull_request` delivery for `url`, signed with
    /// `secret`; returns the HTTP status code and body. Retries while the
    /// controller is not listening yet.
    fn post_pull_request(
        &self,
        secret: &str,
        url: &str,
        number: u32,
        action: &str,
    ) -> (u16, String) {
        use hmac::{Hmac, KeyInit, Mac};
        use std::io::{Read, Write};
        let body = serde_json::json!({
            "action": action,
            "number": number,
            "pull_request": { "number": number },
            "repository": { "clone_url": url },
        })
        .to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let started = std::time::Instant::now();
        let mut stream = loop {
            match std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(stream) => break stream,
                Err(e) if started.elapsed() > LIMIT => {
                    panic!("the controller does not listen: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let request = format!(
            "POST /hooks/github HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-GitHub-Event: pull_request\r\n\
             X-Hub-Signature-256: sha256={signature}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- controller log ---\n{log}");
        }
    }
}

async fn install_crds(client: &Client) {
    support::install_crds(client, "windlass-tests").await;
}

fn preview(name: &str, url: &str) -> Preview {
    preview_with(name, url, serde_json::json!({}))
}

/// A Preview of `url` listing every 2s, with `extra` merged into its spec.
fn preview_with(name: &str, url: &str, extra: serde_json::Value) -> Preview {
    let mut spec = serde_json::json!({
        "source": { "repoURL": url, "refPattern": "refs/pull/*/head" },
        "interval": "2s",
        "template": { "path": "app", "sync": { "interval": "2s" } },
        "url": "http://{{slug}}.preview.test",
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "windlass.dev/v1alpha1",
        "kind": "Preview",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// Commits `files` on branch `pr`, pushes it to `refs/pull/<n>/head`;
/// returns the commit.
fn push_pull_request(served: &ServedRepo, number: u32, files: &[(&str, &str)]) -> String {
    let work = &served.repo.work;
    let branch = format!("pr-{number}");
    if git(work, &["branch", "--list", &branch]).is_empty() {
        git(work, &["checkout", "-q", "-b", &branch]);
    } else {
        git(work, &["checkout", "-q", &branch]);
    }
    let commit = served.repo.commit(files, &format!("pull request {number}"));
    served.repo.push_ref(&format!("refs/pull/{number}/head"));
    git(work, &["checkout", "-q", "main"]);
    commit
}

async fn configmap_value(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .ok()
        .flatten()?
        .data?
        .get("value")
        .cloned()
}

async fn wait_for_preview(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Preview) -> bool,
) -> Preview {
    let api: Api<Preview> = Api::namespaced(client.clone(), ns);
    let check = &check;
    eventually(what, LIMIT, || {
        let api = api.clone();
        async move {
            let preview = api.get(name).await.map_err(|e| e.to_string())?;
            if check(&preview) {
                Ok(preview)
            } else {
                Err(format!("status: {:?}", preview.status))
            }
        }
    })
    .await
}

/// The generated Application's revision records (Secrets in the
/// Preview's namespace).
async fn revision_records(client: &Client, ns: &str, application: &str) -> usize {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let selector = format!("windlass.dev/app={ns}.{application},windlass.dev/revision");
    secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .len()
}

async fn namespace_gone(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {name} to be gone"), LIMIT, || {
        let namespaces = namespaces.clone();
        async move {
            match namespaces.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(n)) => Err(format!("still there: {:?}", n.status)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Deletes the Preview while the controller runs, and waits until its
/// finalizer has torn everything down.
async fn delete_preview(client: &Client, ns: &str, name: &str) {
    let api: Api<Preview> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    eventually("the Preview to be gone", LIMIT, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(p)) => Err(format!("{:?}", p.metadata.finalizers)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_ref_gets_a_namespace_that_follows_it_and_goes_with_it() {
    with_namespace("prv", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start("prv", &[("app/page.yaml", &configmap("page", "main"))]);
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(&PostParams::default(), &preview(&name, &served.url))
            .await
            .unwrap();
        let preview_ns = format!("{name}-pr-7");

        // A new pull request: its namespace holds the rendered objects.
        let first = push_pull_request(
            &served,
            7,
            &[("app/page.yaml", &configmap("page", "pr-v1"))],
        );
        eventually("the preview's ConfigMap", LIMIT, || {
            let (client, preview_ns) = (client.clone(), preview_ns.clone());
            async move {
                let value = configmap_value(&client, &preview_ns, "page").await;
                (value.as_deref() == Some("pr-v1"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let created = namespaces.get(&preview_ns).await.unwrap();
        assert_eq!(created.labels()["windlass.dev/preview"], name);
        assert_eq!(created.labels()["windlass.dev/preview-number"], "7");
        let applications: Api<Application> = Api::namespaced(client.clone(), &ns);
        let generated = applications.get(&preview_ns).await.unwrap();
        assert_eq!(
            generated.spec.source.reference.as_deref(),
            Some(first.as_str())
        );
        assert_eq!(generated.destination_namespace(), preview_ns);
        // (Checked through the label too: concurrent tests may install an
        // older Application CRD, which prunes spec.restrictions.)
        assert!(
            generated
                .effective_restrictions()
                .unwrap()
                .destination_namespace_only
        );
        assert_eq!(
            generated.owner_references()[0].name,
            name,
            "owned by the Preview"
        );

        let status = wait_for_preview(&client, &ns, &name, "status.previews ready", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.previews.len() == 1
                    && s.previews[0].ready == "True"
                    && s.previews[0].commit == first
            })
        })
        .await
        .status
        .unwrap();
        let entry = &status.previews[0];
        assert_eq!(entry.number, Some(7));
        assert_eq!(entry.namespace, preview_ns);
        assert_eq!(entry.url.as_deref(), Some("http://pr-7.preview.test"));
        let table = windlass_expect(&["previews", "-n", &ns], 0);
        assert!(table.starts_with("PREVIEW"), "{table}");
        assert!(
            table.lines().any(|l| l.split_whitespace().eq([
                name.as_str(),
                "7",
                &first[..7],
                preview_ns.as_str(),
                "True",
                "http://pr-7.preview.test"
            ])),
            "{table}"
        );

        // A new commit on the pull request: the preview follows it.
        let second = push_pull_request(
            &served,
            7,
            &[("app/page.yaml", &configmap("page", "pr-v2"))],
        );
        eventually("the moved preview's ConfigMap", LIMIT, || {
            let (client, preview_ns) = (client.clone(), preview_ns.clone());
            async move {
                let value = configmap_value(&client, &preview_ns, "page").await;
                (value.as_deref() == Some("pr-v2"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;
        let generated = applications.get(&preview_ns).await.unwrap();
        assert_eq!(
            generated.spec.source.reference.as_deref(),
            Some(second.as_str())
        );

        let records = revision_records(&client, &ns, &preview_ns).await;
        assert!(records >= 2, "a revision per commit: {records}");

        // The ref goes (the pull request closed): Application and namespace go.
        git(
            &served.repo.work,
            &["push", "-q", "origin", ":refs/pull/7/head"],
        );
        namespace_gone(&client, &preview_ns).await;
        assert!(applications.get_opt(&preview_ns).await.unwrap().is_none());
        assert_eq!(revision_records(&client, &ns, &preview_ns).await, 0);
        wait_for_preview(&client, &ns, &name, "status without previews", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.previews.is_empty() && s.count == 0)
        })
        .await;

        delete_preview(&client, &ns, &name).await;
        drop(controller);
    })
    .await;
}

#[tokio::test]
async fn a_preview_with_a_cluster_role_is_refused_by_name_and_nothing_is_applied() {
    with_namespace("prv-refuse", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start("prv-refuse", &[("app/page.yaml", &configmap("page", "main"))]);
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(&PostParams::default(), &preview(&name, &served.url))
            .await
            .unwrap();
        // Harmless if a bug let it through: it reads ConfigMaps only.
        let role = format!("{ns}-reader");
        let cluster_role = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n  - apiGroups: [\"\"]\n    resources: [\"configmaps\"]\n    verbs: [\"get\"]\n"
        );
        push_pull_request(
            &served,
            3,
            &[
                ("app/page.yaml", &configmap("page", "pr")),
                ("app/clusterrole.yaml", &cluster_role),
            ],
        );
        let preview_ns = format!("{name}-pr-3");

        let refused = wait_for_preview(&client, &ns, &name, "the Refused condition", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Refused" && c.status == "True")
            })
        })
        .await;
        let condition = refused
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Refused")
            .unwrap();
        assert!(
            condition.message.contains(&format!("ClusterRole.rbac.authorization.k8s.io {role}"))
                && condition.message.contains("cluster-scoped")
                && condition.message.contains(&preview_ns),
            "{}",
            condition.message
        );

        let applications: Api<Application> = Api::namespaced(client.clone(), &ns);
        let generated = applications.get(&preview_ns).await.unwrap();
        let ready = generated.condition("Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert!(ready.message.contains(&role), "{}", ready.message);

        // Nothing was written: not the ClusterRole, not the ConfigMap beside it.
        let roles: Api<ClusterRole> = Api::all(client.clone());
        assert!(roles.get_opt(&role).await.unwrap().is_none());
        assert_eq!(configmap_value(&client, &preview_ns, "page").await, None);

        // Deleting the Preview tears its preview down.
        delete_preview(&client, &ns, &name).await;
        namespace_gone(&client, &preview_ns).await;
        assert!(applications.get_opt(&preview_ns).await.unwrap().is_none());
        drop(controller);
    })
    .await;
}

#[test]
fn the_checked_in_preview_crd_is_current() {
    let generated = Preview::crd_yaml();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/crds/previews.windlass.dev.yaml"
    );
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        checked_in == generated,
        "deploy/crds/previews.windlass.dev.yaml is stale: regenerate it from `windlass crd` (the \
         second document)"
    );
}

#[tokio::test]
async fn windlass_sync_refuses_objects_outside_the_restrictions_before_writing() {
    with_namespace("prv-sync", |client, ns| async move {
        let role = format!("{ns}-reader");
        let cluster_role = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n  - apiGroups: [\"\"]\n    resources: [\"configmaps\"]\n    verbs: [\"get\"]\n"
        );
        let elsewhere = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n  namespace: default\ndata:\n  value: x\n";
        let served = ServedRepo::start(
            "prv-sync",
            &[
                ("app/page.yaml", &configmap("page", "v1")),
                ("app/role.yaml", &cluster_role),
                ("app/stray.yaml", elsewhere),
            ],
        );
        let file = served.root.path().join("app.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: windlass.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  source:\n    repoURL: {}\n    ref: main\n    path: app\n  restrictions:\n    destinationNamespaceOnly: true\n",
                served.url
            ),
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let output = windlass_expect(&["sync", "-n", &ns, "--app-file", file], 2);
        assert!(
            output.contains("2 objects are outside the application's restrictions")
                && output.contains(&format!(
                    "ClusterRole.rbac.authorization.k8s.io {role} (cluster-scoped"
                ))
                && output.contains("ConfigMap stray (in namespace default"),
            "{output}"
        );
        // Nothing was written, not even the allowed ConfigMap.
        assert_eq!(configmap_value(&client, &ns, "page").await, None);

        // allowKinds lets a kind through; the rest is still refused.
        let text = std::fs::read_to_string(file).unwrap();
        std::fs::write(
            file,
            format!("{text}    allowKinds: [ClusterRole.rbac.authorization.k8s.io]\n"),
        )
        .unwrap();
        let output = windlass_expect(&["diff", "-n", &ns, "--app-file", file], 2);
        assert!(
            output.contains("1 object is outside") && !output.contains(&role),
            "{output}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_idle_preview_expires_and_comes_back_with_a_new_commit() {
    with_namespace("prv-ttl", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start("prv-ttl", &[("app/page.yaml", &configmap("page", "main"))]);
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        let spec = serde_json::json!({ "ttl": "15s" });
        previews
            .create(
                &PostParams::default(),
                &preview_with(&name, &served.url, spec),
            )
            .await
            .unwrap();
        let preview_ns = format!("{name}-pr-5");
        let first = push_pull_request(&served, 5, &[("app/page.yaml", &configmap("page", "one"))]);

        // Up, then (its head idle past the ttl) down, remembered as expired.
        wait_for_preview(&client, &ns, &name, "the preview to come up", |p| {
            p.status.as_ref().is_some_and(|s| s.previews.len() == 1)
        })
        .await;
        let expired = wait_for_preview(&client, &ns, &name, "the preview to expire", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.previews.is_empty() && s.expired.len() == 1)
        })
        .await;
        let entry = &expired.status.unwrap().expired[0];
        assert_eq!(
            (entry.reference.as_str(), entry.commit.as_str()),
            ("refs/pull/5/head", first.as_str())
        );
        namespace_gone(&client, &preview_ns).await;

        // A new commit on the ref brings it back.
        push_pull_request(&served, 5, &[("app/page.yaml", &configmap("page", "two"))]);
        eventually("the revived preview's ConfigMap", LIMIT, || {
            let (client, preview_ns) = (client.clone(), preview_ns.clone());
            async move {
                let value = configmap_value(&client, &preview_ns, "page").await;
                (value.as_deref() == Some("two"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;

        delete_preview(&client, &ns, &name).await;
        namespace_gone(&client, &preview_ns).await;
        drop(controller);
    })
    .await;
}

/// A stand-in for GitHub's REST API on 127.0.0.1: the pull requests it
/// lists, and the commit statuses posted to it (with their Authorization).
#[derive(Clone, Default)]
struct FakeGitHub {
    pulls: std::sync::Arc<std::sync::Mutex<serde_json::Value>>,
    statuses: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl FakeGitHub {
    /// Serves `/repos/org/deploy/...`; returns the base URL. Requests
    /// without `Authorization: Bearer t0ken` get 401.
    async fn start(&self) -> String {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};
        fn authorized(headers: &HeaderMap) -> bool {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0ken")
        }
        let app = axum::Router::new()
            .route(
                "/repos/org/deploy/pulls",
                get(
                    |State(fake): State<FakeGitHub>, headers: HeaderMap| async move {
                        if !authorized(&headers) {
                            return Err(StatusCode::UNAUTHORIZED);
                        }
                        Ok(axum::Json(fake.pulls.lock().unwrap().clone()))
                    },
                ),
            )
            .route(
                "/repos/org/deploy/statuses/{sha}",
                post(
                    |State(fake): State<FakeGitHub>,
                     Path(sha): Path<String>,
                     headers: HeaderMap,
                     axum::Json(body): axum::Json<serde_json::Value>| async move {
                        if !authorized(&headers) {
                            return StatusCode::UNAUTHORIZED;
                        }
                        fake.statuses.lock().unwrap().push((sha, body));
                        StatusCode::CREATED
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn set_pulls(&self, pulls: serde_json::Value) {
        *self.pulls.lock().unwrap() = pulls;
    }

    /// The states posted for `sha`, in order.
    fn states(&self, sha: &str) -> Vec<serde_json::Value> {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == sha)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn pull(number: u32, sha: &str, draft: bool, labels: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "number": number, "state": "open", "draft": draft,
        "head": { "ref": format!("pr-{number}"), "sha": sha },
        "labels": labels.iter().map(|l| serde_json::json!({ "name": l })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn with_a_provider_only_open_labelled_pull_requests_get_previews_and_statuses() {
    with_namespace("prv-scm", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start("prv-scm", &[("app/page.yaml", &configmap("page", "main"))]);
        let wanted = push_pull_request(&served, 1, &[("app/page.yaml", &configmap("page", "one"))]);
        let draft = push_pull_request(&served, 2, &[("app/page.yaml", &configmap("page", "two"))]);
        let unlabelled = push_pull_request(
            &served,
            3,
            &[("app/page.yaml", &configmap("page", "three"))],
        );
        let github = FakeGitHub::default();
        github.set_pulls(serde_json::json!([
            pull(1, &wanted, false, &["preview"]),
            pull(2, &draft, true, &["preview"]),
            pull(3, &unlabelled, false, &[]),
        ]));
        let api = github.start().await;

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let token: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "scm" }, "stringData": { "token": "t0ken" }
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &token)
            .await
            .unwrap();
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let provider = serde_json::json!({ "provider": {
            "type": "github", "apiURL": api, "repository": "org/deploy",
            "tokenSecretRef": { "name": "scm" }, "labels": ["preview"],
        }});
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(
                &PostParams::default(),
                &preview_with(&name, &served.url, provider),
            )
            .await
            .unwrap();

        // Only pull request 1 has a preview, and its state reaches GitHub.
        let pr1 = format!("{name}-pr-1");
        eventually("pull request 1's ConfigMap", LIMIT, || {
            let (client, pr1) = (client.clone(), pr1.clone());
            async move {
                let value = configmap_value(&client, &pr1, "page").await;
                (value.as_deref() == Some("one"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;
        let states = eventually("a success status for pull request 1", LIMIT, || {
            let states = github.states(&wanted);
            async move {
                let last = states.last().map(|s| s["state"].clone());
                (last == Some(serde_json::json!("success")))
                    .then(|| states.clone())
                    .ok_or(format!("{states:?}"))
            }
        })
        .await;
        assert_eq!(states[0]["state"], "pending", "{states:?}");
        assert_eq!(states.last().unwrap()["context"], "windlass/preview");
        assert_eq!(
            states.last().unwrap()["target_url"],
            "http://pr-1.preview.test"
        );
        let status = previews.get(&name).await.unwrap().status.unwrap();
        let numbers: Vec<Option<i64>> = status.previews.iter().map(|p| p.number).collect();
        assert_eq!(numbers, [Some(1)]);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for number in [2, 3] {
            let other = format!("{name}-pr-{number}");
            assert!(
                namespaces.get_opt(&other).await.unwrap().is_none(),
                "{other}"
            );
        }
        assert!(github.states(&draft).is_empty() && github.states(&unlabelled).is_empty());

        // Closed on GitHub (its ref stays, as GitHub keeps it): the preview goes.
        github.set_pulls(serde_json::json!([]));
        namespace_gone(&client, &pr1).await;

        delete_preview(&client, &ns, &name).await;
        drop(controller);
    })
    .await;
}

#[test]
fn the_example_preview_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/previews/preview.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let preview: Preview = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(preview.spec.source.ref_pattern, "refs/pull/*/head");
    assert_eq!(preview.ttl().unwrap(), Some(Duration::from_secs(72 * 3600)));
    let provider = preview.spec.provider.as_ref().unwrap();
    assert_eq!(provider.labels, ["preview"]);
    windlass::preview::provider::Provider::from_spec(provider, &preview.spec.source.repo_url)
        .expect("owner/name comes from the repoURL");
}

#[tokio::test]
async fn a_privileged_pod_in_a_preview_is_stopped_by_pod_security() {
    with_namespace("prv-psa", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start("prv-psa", &[("app/page.yaml", &configmap("page", "main"))]);
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(&PostParams::default(), &preview(&name, &served.url))
            .await
            .unwrap();
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: node-escape\nspec:\n  containers:\n    - name: c\n      image: busybox\n      securityContext:\n        privileged: true\n";
        push_pull_request(&served, 4, &[("app/pod.yaml", pod)]);
        let preview_ns = format!("{name}-pr-4");

        let applications: Api<Application> = Api::namespaced(client.clone(), &ns);
        let message = eventually("the generated Application to fail", LIMIT, || {
            let (applications, preview_ns) = (applications.clone(), preview_ns.clone());
            async move {
                let app = applications.get(&preview_ns).await.map_err(|e| e.to_string())?;
                let ready = app.condition("Ready").ok_or("no Ready yet")?;
                (ready.status == "False")
                    .then(|| ready.message.clone())
                    .ok_or(format!("{ready:?}"))
            }
        })
        .await;
        assert!(
            message.contains("node-escape") && message.contains("violates PodSecurity \"baseline"),
            "{message}"
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let created = namespaces.get(&preview_ns).await.unwrap();
        assert_eq!(created.labels()["pod-security.kubernetes.io/enforce"], "baseline");

        delete_preview(&client, &ns, &name).await;
        namespace_gone(&client, &preview_ns).await;
        drop(controller);
    })
    .await;
}

#[tokio::test]
async fn a_restarted_controller_with_an_empty_cache_fetches_the_previews_commits() {
    with_namespace("prv-restart", |client, ns| async move {
        install_crds(&client).await;
        let served = ServedRepo::start(
            "prv-restart",
            &[("app/page.yaml", &configmap("page", "main"))],
        );
        let controller = RunningController::start(&ns);
        let name = ns.clone();
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(&PostParams::default(), &preview(&name, &served.url))
            .await
            .unwrap();
        let preview_ns = format!("{name}-pr-8");
        push_pull_request(&served, 8, &[("app/page.yaml", &configmap("page", "pr"))]);
        // Only refs/pull/8/head holds the commit, as on GitHub for a fork's
        // pull request: no branch or tag leads to it.
        git(
            &served.repo.work,
            &["push", "-q", "origin", ":refs/heads/pr-8"],
        );
        eventually("the preview's ConfigMap", LIMIT, || {
            let (client, preview_ns) = (client.clone(), preview_ns.clone());
            async move {
                let value = configmap_value(&client, &preview_ns, "page").await;
                (value.as_deref() == Some("pr"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;

        // A new controller process with a new, empty mirror cache.
        drop(controller);
        let controller = RunningController::start(&ns);
        // Its first reconciles may fail until the Preview loop has fetched
        // the commit; then the generated Application is Ready again.
        eventually("a successful reconcile", LIMIT, || {
            let (preview_ns, ns) = (preview_ns.clone(), ns.clone());
            async move {
                let output = windlass()
                    .args(["reconcile", &preview_ns, "-n", &ns, "--timeout", "20"])
                    .output()
                    .unwrap();
                let text = support::output_text(&output);
                output.status.success().then_some(()).ok_or(text)
            }
        })
        .await;

        delete_preview(&client, &ns, &name).await;
        namespace_gone(&client, &preview_ns).await;
        drop(controller);
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_webhook_brings_a_new_preview_up_without_waiting_for_the_interval() {
    with_namespace("prv-hook", |client, ns| async move {
        install_crds(&client).await;
        let served =
            ServedRepo::start("prv-hook", &[("app/page.yaml", &configmap("page", "main"))]);
        let secret = "preview-hook-secret";
        let controller = RunningController::start_with(&ns, Some(secret));
        let name = ns.clone();
        // Listed once an hour: only the webhook can bring the new ref in time.
        let previews: Api<Preview> = Api::namespaced(client.clone(), &ns);
        previews
            .create(
                &PostParams::default(),
                &preview_with(&name, &served.url, serde_json::json!({ "interval": "1h" })),
            )
            .await
            .unwrap();
        // The first pass has listed the refs (none yet): the hour starts.
        wait_for_preview(&client, &ns, &name, "the first listing", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.last_listed_time.is_some()
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .await;

        push_pull_request(&served, 4, &[("app/page.yaml", &configmap("page", "pr-4"))]);
        let (code, reply) = controller.post_pull_request(secret, &served.url, 4, "opened");
        assert_eq!(code, 202, "{reply}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&reply).unwrap(),
            serde_json::json!({ "accepted": 1 }),
            "one Preview woken"
        );
        let preview_ns = format!("{name}-pr-4");
        eventually("the preview the webhook announced", LIMIT, || {
            let (client, preview_ns) = (client.clone(), preview_ns.clone());
            async move {
                let value = configmap_value(&client, &preview_ns, "page").await;
                (value.as_deref() == Some("pr-4"))
                    .then_some(())
                    .ok_or(format!("{value:?}"))
            }
        })
        .await;

        // Another repository's pull request wakes nothing.
        let (code, reply) = controller.post_pull_request(
            secret,
            "https://git.example.com/org/other.git",
            4,
            "opened",
        );
        assert_eq!(code, 202, "{reply}");
        assert!(reply.contains("\"accepted\":0"), "{reply}");

        delete_preview(&client, &ns, &name).await;
        drop(controller);
    })
    .await;
}
