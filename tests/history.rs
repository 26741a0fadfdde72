//! `windlass history`, `rollback`, automatic rollback and `uninstall`
//! against the real local control plane.

mod support;

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use support::git::{ServedRepo, TempDir};
use support::{configmap, windlass_expect, with_namespace, write_files};

/// A Deployment that never becomes available: the control plane has no nodes.
const NEVER_AVAILABLE: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: stuck}\n  template:\n    metadata:\n      labels: {app: stuck}\n    spec:\n      containers: [{name: c, image: nginx}]\n";

fn sync_dir(dir: &Path, ns: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec![
        "sync",
        "--dir",
        dir.to_str().unwrap(),
        "-n",
        ns,
        "--name",
        "app",
    ];
    args.extend_from_slice(extra);
    windlass_expect(&args, code)
}

/// (revision, status) rows of `windlass history`, newest first.
fn history_rows(ns: &str) -> Vec<(u64, String)> {
    windlass_expect(&["history", "app", "-n", ns], 0)
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split_whitespace();
            let number = fields.next().unwrap().parse().unwrap();
            let status = fields.nth(2).unwrap().to_string();
            (number, status)
        })
        .collect()
}

async fn value_of(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .unwrap()
        .map(|c| c.data.unwrap()["value"].clone())
}

#[tokio::test]
async fn numbering_and_the_history_limit_keep_the_live_and_last_successful_revisions() {
    with_namespace("history-limit", |_client, ns| async move {
        let dir = TempDir::new("history-limit");
        for value in ["1", "2", "3"] {
            write_files(dir.path(), &[("a.yaml", &configmap("a", value))]);
            sync_dir(dir.path(), &ns, &["--history-limit", "2", "--no-wait"], 0);
        }
        assert_eq!(
            history_rows(&ns),
            [(3, "deployed".into()), (2, "superseded".into())]
        );

        // A failed revision: with a limit of 2, the last successful one (3)
        // stays even though it is older than the failed one.
        write_files(dir.path(), &[("stuck.yaml", NEVER_AVAILABLE)]);
        let out = sync_dir(
            dir.path(),
            &ns,
            &["--history-limit", "2", "--timeout", "2s"],
            2,
        );
        assert!(out.contains("revision 4 of"), "{out}");
        assert_eq!(
            history_rows(&ns),
            [(4, "failed".into()), (3, "deployed".into())]
        );

        std::fs::remove_file(dir.path().join("stuck.yaml")).unwrap();
        write_files(dir.path(), &[("a.yaml", &configmap("a", "5"))]);
        sync_dir(
            dir.path(),
            &ns,
            &["--history-limit", "2", "--prune", "--no-wait"],
            0,
        );
        let rows = history_rows(&ns);
        assert_eq!(
            rows[0],
            (5, "deployed".into()),
            "numbers are never reused: {rows:?}"
        );
        assert_eq!(rows.len(), 2, "{rows:?}");

        let table = windlass_expect(&["history", "app", "-n", &ns], 0);
        assert!(
            table.starts_with("REVISION  UPDATED               STATUS      COMMIT   SOURCE"),
            "{table}"
        );
        assert!(table.contains("dir:"), "{table}");
    })
    .await;
}

#[tokio::test]
async fn rollback_restores_content_and_removes_objects_added_later() {
    with_namespace("history-rollback", |client, ns| async move {
        let dir = TempDir::new("history-rollback");
        write_files(dir.path(), &[("a.yaml", &configmap("a", "old"))]);
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);
        write_files(
            dir.path(),
            &[
                ("a.yaml", &configmap("a", "new")),
                ("b.yaml", &configmap("b", "added")),
            ],
        );
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);
        assert_eq!(value_of(&client, &ns, "b").await.as_deref(), Some("added"));

        let diff = windlass_expect(&["diff", "app", "--revision", "1", "-n", &ns], 1);
        assert!(
            diff.contains("-  value: new") || diff.contains("-  value: \"new\""),
            "{diff}"
        );
        assert!(diff.contains("1 to delete"), "{diff}");

        let out = windlass_expect(&["rollback", "app", "-n", &ns, "--no-wait"], 0);
        assert!(out.contains("rolling back"), "{out}");
        assert!(
            out.contains(&format!("deleted v1 ConfigMap {ns}/b")),
            "{out}"
        );
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("old"));
        assert_eq!(value_of(&client, &ns, "b").await, None);
        assert_eq!(
            history_rows(&ns),
            [
                (3, "deployed".into()),
                (2, "rolled-back".into()),
                (1, "superseded".into())
            ]
        );
        let table = windlass_expect(&["history", "app", "-n", &ns], 0);
        assert!(table.contains("rollback to 1"), "{table}");

        // Exactly what revision 1 applied, and its record as JSON.
        let manifests = windlass_expect(
            &[
                "history",
                "app",
                "-n",
                &ns,
                "--revision",
                "1",
                "--manifests",
            ],
            0,
        );
        assert!(
            manifests.contains("name: a") && manifests.contains("old"),
            "{manifests}"
        );
        let json = windlass_expect(&["history", "app", "-n", &ns, "-o", "json"], 0);
        let records: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(records.as_array().unwrap().len(), 3);
        assert!(
            records[0].get("manifests").is_none(),
            "manifests only with --manifests"
        );
    })
    .await;
}

#[tokio::test]
async fn rollback_works_with_the_git_server_stopped() {
    with_namespace("history-offline", |client, ns| async move {
        let served = ServedRepo::start("history-offline", &[("app/a.yaml", &configmap("a", "v1"))]);
        let (repo, url) = (&served.repo, served.url.clone());
        let sync = |code| {
            windlass_expect(
                &[
                    "sync",
                    "--repo",
                    &url,
                    "--path",
                    "app",
                    "--name",
                    "app",
                    "-n",
                    &ns,
                    "--no-wait",
                ],
                code,
            )
        };
        sync(0);
        repo.commit(&[("app/a.yaml", &configmap("a", "v2"))], "v2");
        sync(0);
        drop(served.daemon); // the git server is gone
        let out = sync(2);
        assert!(out.contains("cannot reach it"), "{out}");

        windlass_expect(&["rollback", "app", "1", "-n", &ns, "--no-wait"], 0);
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v1"));
    })
    .await;
}

#[tokio::test]
async fn a_failed_health_check_rolls_back_and_the_commit_is_not_retried() {
    with_namespace("history-auto", |client, ns| async move {
        let served = ServedRepo::start("history-auto", &[("app/a.yaml", &configmap("a", "good"))]);
        let (repo, url) = (&served.repo, served.url.clone());
        let sync = |extra: &[&str], code| {
            let mut args = vec![
                "sync",
                "--repo",
                &url,
                "--path",
                "app",
                "--name",
                "app",
                "-n",
                &ns,
                "--rollback-on-failure",
                "--timeout",
                "2s",
            ];
            args.extend_from_slice(extra);
            windlass_expect(&args, code)
        };
        // Revision 1 is healthy (a ConfigMap is healthy once it exists).
        sync(&[], 0);

        // A commit that can never become healthy.
        let bad = repo.commit(
            &[
                ("app/a.yaml", &configmap("a", "bad")),
                ("app/stuck.yaml", NEVER_AVAILABLE),
            ],
            "bad",
        );
        let out = sync(&[], 2);
        assert!(out.contains("health check failed"), "{out}");
        assert!(out.contains("rolled back to revision 1"), "{out}");
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("good"));
        let rows = history_rows(&ns);
        assert_eq!(
            rows,
            [
                (3, "deployed".into()),
                (2, "failed".into()),
                (1, "rolled-back".into())
            ]
        );
        let table = windlass_expect(&["history", "app", "-n", &ns], 0);
        assert!(
            table.contains(&bad[..7]) && table.contains("0/1 replicas available"),
            "{table}"
        );

        // The same commit again is refused; nothing is written.
        let out = sync(&[], 2);
        assert!(
            out.contains(&format!(
                "commit {} failed at revision 2 and was rolled back",
                &bad[..7]
            )),
            "{out}"
        );
        assert_eq!(history_rows(&ns).len(), 3);

        // A new commit is accepted.
        repo.commit(&[("app/a.yaml", &configmap("a", "fixed"))], "fix");
        std::fs::remove_file(repo.work.join("app/stuck.yaml")).unwrap();
        repo.commit(&[], "remove stuck");
        sync(&["--prune"], 0);
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("fixed"));
    })
    .await;
}

#[tokio::test]
async fn uninstall_deletes_objects_and_history() {
    with_namespace("history-uninstall", |client, ns| async move {
        let dir = TempDir::new("history-uninstall");
        write_files(dir.path(), &[("a.yaml", &configmap("a", "1")), ("b.yaml", &configmap("b", "1"))]);
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);
        // Someone protects one object.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        cms.patch("b", &PatchParams::default(), &Patch::Merge(serde_json::json!({ "metadata": { "annotations": { "windlass.dev/prune": "disabled" } } })))
            .await
            .unwrap();

        let out = windlass_expect(&["uninstall", "app", "-n", &ns, "--keep-history"], 0);
        assert!(out.contains("1 deleted, 1 kept"), "{out}");
        assert_eq!(value_of(&client, &ns, "a").await, None);
        assert!(value_of(&client, &ns, "b").await.is_some());
        assert_eq!(history_rows(&ns).len(), 1, "--keep-history keeps the records");

        windlass_expect(&["uninstall", "app", "-n", &ns], 0);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        assert!(secrets.list(&ListParams::default().labels("windlass.dev/revision")).await.unwrap().items.is_empty());
        let out = windlass_expect(&["history", "app", "-n", &ns], 2);
        assert!(out.contains("has no revisions"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn a_damaged_record_is_a_clear_error_that_changes_nothing() {
    with_namespace("history-damaged", |client, ns| async move {
        let dir = TempDir::new("history-damaged");
        write_files(dir.path(), &[("a.yaml", &configmap("a", "1"))]);
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);
        write_files(dir.path(), &[("a.yaml", &configmap("a", "2"))]);
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .patch(
                "windlass.app.v1",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "data": { "record": "Z2FyYmFnZQ==" } })),
            )
            .await
            .unwrap();
        let out = windlass_expect(&["rollback", "app", "1", "-n", &ns, "--no-wait"], 2);
        assert!(
            out.contains("revision 1") && out.contains("damaged"),
            "{out}"
        );
        assert_eq!(
            value_of(&client, &ns, "a").await.as_deref(),
            Some("2"),
            "nothing changed"
        );
        let out = windlass_expect(&["rollback", "app", "7", "-n", &ns], 2);
        assert!(out.contains("revision 7 does not exist"), "{out}");
        assert_eq!(history_rows_or_error(&ns), 2);
    })
    .await;
}

/// `history` fails as a whole on a damaged record; the table of healthy ones
/// is not what this test is about, so count records by label instead.
fn history_rows_or_error(ns: &str) -> usize {
    let out = support::windlass()
        .args(["history", "app", "-n", ns])
        .output()
        .unwrap();
    let text = support::output_text(&out);
    assert!(!out.status.success() && text.contains("damaged"), "{text}");
    2
}

#[tokio::test]
async fn writers_of_one_application_are_serialised_by_its_lease() {
    use windlass::identity::AppIdentity;
    use windlass::sync::lock::{self, LockOptions};
    with_namespace("history-lock", |client, ns| async move {
        let dir = TempDir::new("history-lock");
        write_files(dir.path(), &[("a.yaml", &configmap("a", "1"))]);
        let app = AppIdentity::new(ns.clone(), "app");

        // Someone else (here: the test) is operating on the application.
        let lock = lock::acquire(&client, &app, "test-holder", &LockOptions::default())
            .await
            .unwrap();
        let out = sync_dir(dir.path(), &ns, &["--no-wait", "--lock-timeout", "1s"], 2);
        assert!(
            out.contains("locked by test-holder") && out.contains("--lock-timeout"),
            "{out}"
        );
        assert_eq!(value_of(&client, &ns, "a").await, None, "nothing written");

        // A writer with time to wait goes ahead once the lock is released.
        let waiting = support::windlass()
            .args([
                "sync",
                "--dir",
                dir.path().to_str().unwrap(),
                "-n",
                &ns,
                "--name",
                "app",
                "--no-wait",
                "--lock-timeout",
                "90s",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            value_of(&client, &ns, "a").await,
            None,
            "still waiting for the lock"
        );
        lock.release().await.unwrap();
        let output = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(
            stdout.contains("waiting up to 90s for test-holder"),
            "{stdout}"
        );
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("1"));

        // Two syncs started together: both finish, one after the other.
        let (a, b) = (
            TempDir::new("history-lock-a"),
            TempDir::new("history-lock-b"),
        );
        write_files(a.path(), &[("a.yaml", &configmap("a", "from-a"))]);
        write_files(b.path(), &[("a.yaml", &configmap("a", "from-b"))]);
        let start = |dir: &Path| {
            support::windlass()
                .args([
                    "sync",
                    "--dir",
                    dir.to_str().unwrap(),
                    "-n",
                    &ns,
                    "--name",
                    "app",
                    "--no-wait",
                    "--lock-timeout",
                    "90s",
                ])
                .output()
        };
        let (ra, rb) = std::thread::scope(|scope| {
            let ta = scope.spawn(|| start(a.path()));
            let tb = scope.spawn(|| start(b.path()));
            (ta.join().unwrap().unwrap(), tb.join().unwrap().unwrap())
        });
        assert!(
            ra.status.success() && rb.status.success(),
            "{}\n{}",
            support::output_text(&ra),
            support::output_text(&rb)
        );
        let rows = history_rows(&ns);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(
            rows.iter().all(|(_, status)| status != "pending"),
            "{rows:?}"
        );
    })
    .await;
}

/// A PersistentVolume keeps its `pv-protection` finalizer while a claim is
/// bound to it: uninstall must delete the claim first, then the volume, and
/// finish in seconds (it used to wait 300 s for the volume, then fail).
#[tokio::test]
async fn uninstall_deletes_a_claim_before_its_volume_and_removes_the_lock() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    with_namespace("history-pv", |client, ns| async move {
        let volume = format!("{ns}-data");
        let pv = format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {volume}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  hostPath: {{path: /tmp/{volume}}}\n"
        );
        let pvc = format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: {volume}\n  resources: {{requests: {{storage: 1Gi}}}}\n"
        );
        let dir = TempDir::new("history-pv");
        // The volume sorts first in the set, as it did in the report.
        write_files(dir.path(), &[("a-pv.yaml", &pv), ("b-pvc.yaml", &pvc)]);
        sync_dir(dir.path(), &ns, &["--no-wait"], 0);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        support::eventually("the claim is bound", std::time::Duration::from_secs(60), || {
            let claims = claims.clone();
            async move {
                let claim = claims.get("data").await.map_err(|e| e.to_string())?;
                let phase = claim.status.and_then(|s| s.phase).unwrap_or_default();
                if phase == "Bound" { Ok(()) } else { Err(phase) }
            }
        })
        .await;

        let out = windlass_expect(&["uninstall", "app", "-n", &ns, "--prune-dangerous"], 0);
        assert!(out.contains("2 deleted, 0 kept"), "{out}");
        assert!(!out.contains("pruning"), "an uninstall says uninstall: {out}");
        let claim_line = out.find("deleted v1 PersistentVolumeClaim").expect(&out);
        let volume_line = out.find("deleted v1 PersistentVolume ").expect(&out);
        assert!(claim_line < volume_line, "the claim goes first: {out}");
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        assert!(volumes.get_opt(&volume).await.unwrap().is_none());
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        assert!(
            leases.get_opt("windlass.app").await.unwrap().is_none(),
            "the application's lock Lease is removed with it"
        );
    })
    .await;
}
