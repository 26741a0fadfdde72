//! Git sources against real servers on 127.0.0.1: local paths and file://,
//! `git daemon`, `git http-backend` with basic auth, and OpenSSH `sshd`.

mod support;

use std::time::Duration;

use support::git::{GitDaemon, HttpGit, Sshd, TempDir, TestRepo, git};
use windlass::source::{
    Credentials, Error, HostKeys, Limits, Repo, Secret, SourceCache, SourceOptions,
};

fn cache(dir: &TempDir) -> SourceCache {
    SourceCache::new(SourceOptions::new(dir.path().join("cache")))
}

fn public(url: &str) -> Repo {
    Repo::new(url, Credentials::None).unwrap()
}

/// A repository with branches, both kinds of tags, a pull-request ref, an
/// app directory with a symlink to a shared file, and history.
fn sample_repo(root: &std::path::Path) -> (TestRepo, String) {
    let repo = TestRepo::create(
        root,
        "deploy",
        &[
            ("apps/web/deployment.yaml", "kind: Deployment\n"),
            ("apps/api/service.yaml", "kind: Service\n"),
            ("shared/labels.yaml", "team: a\n"),
        ],
    );
    std::os::unix::fs::symlink(
        "../../shared/labels.yaml",
        repo.work.join("apps/web/labels.yaml"),
    )
    .unwrap();
    let first = repo.commit(&[], "link shared labels");
    repo.tag("v1.2.0", Some("release 1.2.0"));
    repo.commit(
        &[(
            "apps/web/deployment.yaml",
            "kind: Deployment\nreplicas: 2\n",
        )],
        "two",
    );
    repo.tag("v1.4.2", None);
    repo.commit(
        &[("apps/api/service.yaml", "kind: Service\nport: 80\n")],
        "three",
    );
    repo.tag("v2.0.0-rc.1", None);
    repo.push_ref("refs/pull/42/head");
    git(&repo.work, &["checkout", "-q", "-b", "feature"]);
    repo.commit(&[("apps/web/feature.yaml", "kind: ConfigMap\n")], "feature");
    git(&repo.work, &["checkout", "-q", "main"]);
    (repo, first)
}

#[tokio::test]
async fn every_kind_of_ref_resolves_over_local_paths_and_file_urls() {
    let dir = TempDir::new("refs");
    let (repo, first) = sample_repo(dir.path());
    let cache = cache(&dir);
    let main = git(&repo.work, &["rev-parse", "main"]);
    let feature = git(&repo.work, &["rev-parse", "feature"]);
    let at = |rev: &str| git(&repo.work, &["rev-parse", &format!("{rev}^{{commit}}")]);

    for url in [
        repo.bare.display().to_string(),
        format!("file://{}", repo.bare.display()),
    ] {
        let source = public(&url);
        let cases = [
            ("main", "refs/heads/main", main.clone()),
            ("HEAD", "refs/heads/main", main.clone()),
            ("feature", "refs/heads/feature", feature.clone()),
            ("v1.2.0", "refs/tags/v1.2.0", at("v1.2.0")), // annotated: peeled
            ("v1.4.2", "refs/tags/v1.4.2", at("v1.4.2")),
            ("refs/pull/42/head", "refs/pull/42/head", main.clone()),
            (">=1.2.0 <2.0.0", "refs/tags/v1.4.2", at("v1.4.2")),
            ("~1.2", "refs/tags/v1.2.0", at("v1.2.0")),
            (">=2.0.0-0", "refs/tags/v2.0.0-rc.1", at("v2.0.0-rc.1")),
            (first.as_str(), first.as_str(), first.clone()),
        ];
        for (request, ref_name, commit) in cases {
            let resolved = cache.resolve(&source, request).await.unwrap();
            assert_eq!(resolved.ref_name, ref_name, "{url} {request}");
            assert_eq!(resolved.commit.to_string(), commit, "{url} {request}");
        }
    }
}

#[tokio::test]
async fn snapshots_read_files_under_a_path_and_follow_symlinks_inside_the_repository() {
    let dir = TempDir::new("snapshot");
    let (repo, _) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));

    let resolved = cache.resolve(&source, "main").await.unwrap();
    let snapshot = cache
        .snapshot(&source, &resolved, "./apps/web/")
        .await
        .unwrap();
    assert_eq!(snapshot.path, "apps/web");
    assert_eq!(
        snapshot.file_paths().collect::<Vec<_>>(),
        ["deployment.yaml", "labels.yaml"]
    );
    assert_eq!(
        snapshot.file("deployment.yaml"),
        Some(&b"kind: Deployment\nreplicas: 2\n"[..])
    );
    assert_eq!(snapshot.file("labels.yaml"), Some(&b"team: a\n"[..]));
    assert_eq!(snapshot.watched_paths(), ["apps/web", "shared/labels.yaml"]);
    let debug = format!("{snapshot:?}");
    assert!(
        !debug.contains("replicas"),
        "Debug must not print file contents: {debug}"
    );

    let file = cache
        .read_file(&source, &resolved, "apps/api/service.yaml")
        .await
        .unwrap();
    assert_eq!(file, b"kind: Service\nport: 80\n");
}

#[tokio::test]
async fn an_unchanged_poll_transfers_no_pack_and_a_new_commit_fetches_only_what_is_new() {
    let dir = TempDir::new("poll");
    let (repo, _) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));

    let first = cache.resolve(&source, "main").await.unwrap();
    assert!(first.fetched.is_some_and(|s| s.objects > 0), "{first:?}");
    assert_eq!(
        daemon.upload_pack_requests(),
        2,
        "one ref listing, one fetch"
    );
    let objects = cache.mirror_object_count(&source).await.unwrap();

    // Unchanged: one ref listing, no fetch, not one object more.
    let again = cache.resolve(&source, "main").await.unwrap();
    assert_eq!(again.commit, first.commit);
    assert_eq!(again.fetched, None);
    assert_eq!(daemon.upload_pack_requests(), 3);
    assert_eq!(cache.mirror_object_count(&source).await.unwrap(), objects);

    // One new commit touching one file: commit, trees on its path, one blob.
    let new = repo.commit(
        &[(
            "apps/web/deployment.yaml",
            "kind: Deployment\nreplicas: 3\n",
        )],
        "four",
    );
    let next = cache.resolve(&source, "main").await.unwrap();
    assert_eq!(next.commit.to_string(), new);
    let fetched = next.fetched.expect("a fetch");
    assert!(fetched.objects > 0 && fetched.objects <= 5, "{fetched:?}");
    assert_eq!(daemon.upload_pack_requests(), 5);
    assert_eq!(
        cache.mirror_object_count(&source).await.unwrap(),
        objects + fetched.objects
    );

    // Network fetches are shallow.
    let shallow = git(
        &cache.mirror_path(&source),
        &["rev-parse", "--is-shallow-repository"],
    );
    assert_eq!(shallow, "true");
}

#[tokio::test]
async fn an_old_commit_by_id_is_fetched_into_a_shallow_mirror() {
    let dir = TempDir::new("old-commit");
    let (repo, first) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));
    cache.resolve(&source, "main").await.unwrap(); // shallow: lacks `first`

    let resolved = cache.resolve(&source, &first).await.unwrap();
    assert_eq!(resolved.commit.to_string(), first);
    let snapshot = cache
        .snapshot(&source, &resolved, "apps/web")
        .await
        .unwrap();
    assert_eq!(
        snapshot.file("deployment.yaml"),
        Some(&b"kind: Deployment\n"[..])
    );

    // Asked again, it is in the mirror: no network at all.
    let requests = daemon.upload_pack_requests();
    assert_eq!(cache.resolve(&source, &first).await.unwrap().fetched, None);
    assert_eq!(daemon.upload_pack_requests(), requests);
}

#[tokio::test]
async fn two_concurrent_resolves_of_one_repository_share_one_fetch() {
    let dir = TempDir::new("coalesce");
    let (repo, _) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));

    let (a, b) = tokio::join!(
        cache.resolve(&source, "main"),
        cache.resolve(&source, "main")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both callers get the one operation's result");
    assert!(a.fetched.is_some());
    assert_eq!(
        daemon.upload_pack_requests(),
        2,
        "one ref listing and one fetch in all"
    );
}

#[tokio::test]
async fn changes_are_detected_per_path_including_symlinked_files() {
    let dir = TempDir::new("changes");
    let (repo, _) = sample_repo(dir.path());
    let cache = cache(&dir);
    let source = public(&repo.bare.display().to_string());
    let before = cache.resolve(&source, "main").await.unwrap();
    let snapshot = cache.snapshot(&source, &before, "apps/web").await.unwrap();
    let watched = snapshot.watched_paths();

    repo.commit(&[("apps/api/service.yaml", "port: 8080\n")], "api only");
    let api_only = cache.resolve(&source, "main").await.unwrap();
    assert!(
        !cache
            .changed(&source, before.commit, api_only.commit, &watched)
            .await
            .unwrap()
    );
    assert!(
        cache
            .changed(
                &source,
                before.commit,
                api_only.commit,
                &["apps/api".into()]
            )
            .await
            .unwrap()
    );

    repo.commit(&[("shared/labels.yaml", "team: b\n")], "shared");
    let shared = cache.resolve(&source, "main").await.unwrap();
    assert!(
        cache
            .changed(&source, api_only.commit, shared.commit, &watched)
            .await
            .unwrap(),
        "a file the app reads through a symlink changed"
    );
    assert!(
        !cache
            .changed(
                &source,
                api_only.commit,
                shared.commit,
                &["apps/web".into()]
            )
            .await
            .unwrap(),
        "the app directory itself did not change"
    );
}

#[tokio::test]
async fn list_refs_filters_by_glob() {
    let dir = TempDir::new("ls");
    let (repo, _) = sample_repo(dir.path());
    repo.push_ref("refs/pull/7/head");
    repo.push_ref("refs/heads/preview/one");
    repo.push_ref("refs/heads/preview/two/deep");
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));

    let names = |refs: Vec<windlass::source::RemoteRef>| -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    };
    assert_eq!(
        names(cache.list_refs(&source, "refs/pull/*/head").await.unwrap()),
        ["refs/pull/42/head", "refs/pull/7/head"]
    );
    assert_eq!(
        names(
            cache
                .list_refs(&source, "refs/heads/preview/*")
                .await
                .unwrap()
        ),
        ["refs/heads/preview/one"]
    );
    let tags = cache.list_refs(&source, "refs/tags/*").await.unwrap();
    let annotated = tags.iter().find(|r| r.name == "refs/tags/v1.2.0").unwrap();
    assert_eq!(
        annotated.commit.to_string(),
        git(&repo.work, &["rev-parse", "v1.2.0^{commit}"]),
        "annotated tags are listed with their commit"
    );
}

#[tokio::test]
async fn smart_http_with_basic_auth() {
    let dir = TempDir::new("http");
    let (repo, _) = sample_repo(dir.path());
    let server = HttpGit::start(dir.path(), "deploy", "s3cret-pass");
    let cache = cache(&dir);
    let url = server.url(&repo);

    let good = Repo::new(
        &url,
        Credentials::Basic {
            username: "deploy".into(),
            password: Secret::new("s3cret-pass"),
        },
    )
    .unwrap();
    let resolved = cache.resolve(&good, "v1.4.2").await.unwrap();
    assert_eq!(
        resolved.commit.to_string(),
        git(&repo.work, &["rev-parse", "v1.4.2^{commit}"])
    );
    let snapshot = cache.snapshot(&good, &resolved, "apps").await.unwrap();
    assert!(snapshot.file("web/deployment.yaml").is_some());
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("git-upload-pack") && r.ends_with(" 200")),
        "{:?}",
        server.requests()
    );

    // Wrong password: a distinct error naming the repository and the ref.
    let wrong = Repo::new(
        &url,
        Credentials::Basic {
            username: "deploy".into(),
            password: Secret::new("wrong-pass"),
        },
    )
    .unwrap();
    let error = cache.resolve(&wrong, "main").await.unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains("`main`"),
        "{message}"
    );
    assert!(!message.contains("wrong-pass"), "{message}");

    // No credentials at all: says what the server wants.
    let error = cache.resolve(&public(&url), "main").await.unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error}");
    assert!(
        error.to_string().contains("user name and password"),
        "{error}"
    );

    // Credentials inside the URL work and never show.
    let embedded = format!(
        "http://deploy:s3cret-pass@127.0.0.1:{}/{}",
        server.port, repo.name
    );
    let with_url_credentials = public(&embedded);
    assert!(cache.resolve(&with_url_credentials, "main").await.is_ok());
    let error = cache
        .resolve(&with_url_credentials, "no-such-branch")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownRef { .. }), "{error}");
    assert!(!error.to_string().contains("s3cret-pass"), "{error}");
    assert!(!format!("{with_url_credentials:?}").contains("s3cret-pass"));
}

#[tokio::test]
async fn ssh_with_a_key_in_memory_and_known_hosts() {
    let dir = TempDir::new("ssh");
    let (repo, _) = sample_repo(dir.path());
    let sshd = Sshd::start(dir.path());
    let cache = cache(&dir);
    let url = sshd.url(&repo);
    let ssh = |key: &str, host_keys: HostKeys| {
        Repo::new(
            &url,
            Credentials::SshKey {
                private_key: Secret::new(key),
                passphrase: None,
                host_keys,
            },
        )
        .unwrap()
    };

    let good = ssh(&sshd.client_key, HostKeys::Known(sshd.known_hosts.clone()));
    let resolved = cache
        .resolve(&good, "main")
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(
        resolved.commit.to_string(),
        git(&repo.work, &["rev-parse", "main"])
    );

    // A key the server does not know.
    let (stranger, _) = support::git::ssh_keygen(dir.path(), "stranger");
    let error = cache
        .resolve(
            &ssh(&stranger, HostKeys::Known(sshd.known_hosts.clone())),
            "main",
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error}");

    // The right key, but known_hosts holds another key for this host.
    let (_, other_host) = support::git::ssh_keygen(dir.path(), "other_host");
    let other_key = other_host
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mismatch = format!("[127.0.0.1]:{} {other_key}\n", sshd.port);
    let error = cache
        .resolve(&ssh(&sshd.client_key, HostKeys::Known(mismatch)), "main")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::HostKey { .. }), "{error}");
    assert!(
        error.to_string().contains("does not match known_hosts"),
        "{error}"
    );

    // An unknown host is refused too...
    let elsewhere = format!("[127.0.0.1]:1 {other_key}\n");
    let error = cache
        .resolve(&ssh(&sshd.client_key, HostKeys::Known(elsewhere)), "main")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::HostKey { .. }), "{error}");
    assert!(
        error.to_string().contains("is not in known_hosts"),
        "{error}"
    );

    // ...unless the caller opts out explicitly.
    let insecure = ssh(&sshd.client_key, HostKeys::InsecureAcceptAny);
    assert!(cache.resolve(&insecure, "v1.2.0").await.is_ok());
}

#[tokio::test]
async fn errors_are_distinct_and_name_repository_ref_and_path() {
    let dir = TempDir::new("errors");
    let (repo, _) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let url = daemon.url(&repo);
    let source = public(&url);

    let error = cache.resolve(&source, "no-such-branch").await.unwrap_err();
    assert!(matches!(error, Error::UnknownRef { .. }), "{error}");
    assert!(error.to_string().contains(&url) && error.to_string().contains("no-such-branch"));

    let error = cache.resolve(&source, "1.4.2").await.unwrap_err();
    assert!(
        error.to_string().contains("did you mean `v1.4.2`"),
        "{error}"
    );

    let error = cache.resolve(&source, ">=3.0.0").await.unwrap_err();
    assert!(matches!(error, Error::NoMatchingTag { .. }), "{error}");
    assert!(error.to_string().contains("newest v1.4.2"), "{error}");

    let resolved = cache.resolve(&source, "main").await.unwrap();
    let error = cache
        .snapshot(&source, &resolved, "apps/nope")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PathNotFound { .. }), "{error}");
    assert!(error.to_string().contains("apps/nope"), "{error}");

    for escaping in ["../outside", "/etc", "apps/../../x"] {
        let error = cache
            .snapshot(&source, &resolved, escaping)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::PathEscapes { .. }),
            "{escaping}: {error}"
        );
    }

    // A symlink inside the app that points out of the repository.
    std::os::unix::fs::symlink("../../../../etc/passwd", repo.work.join("apps/web/passwd"))
        .unwrap();
    repo.commit(&[], "escape");
    let escaped = cache.resolve(&source, "main").await.unwrap();
    let error = cache
        .snapshot(&source, &escaped, "apps/web")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PathEscapes { .. }), "{error}");
    assert!(
        error.to_string().contains("outside the repository"),
        "{error}"
    );

    // Unreachable: nothing listens on this port.
    let closed = public(&format!(
        "git://127.0.0.1:{}/deploy.git",
        support::git::free_port()
    ));
    let error = cache.resolve(&closed, "main").await.unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("`main`"), "{error}");

    let missing = public(&dir.path().join("no-such-repo").display().to_string());
    let error = cache.resolve(&missing, "main").await.unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error}");
}

#[tokio::test]
async fn limits_are_enforced_with_clear_errors() {
    let dir = TempDir::new("limits");
    let (repo, _) = sample_repo(dir.path());
    repo.commit(&[("apps/web/big.yaml", &"x".repeat(4096))], "big");
    let mut options = SourceOptions::new(dir.path().join("cache"));
    options.limits = Limits {
        max_file_bytes: 1024,
        ..Limits::default()
    };
    let cache = SourceCache::new(options);
    let source = public(&repo.bare.display().to_string());
    let resolved = cache.resolve(&source, "main").await.unwrap();
    let error = cache
        .snapshot(&source, &resolved, "apps/web")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::LimitExceeded { .. }), "{error}");
    assert!(error.to_string().contains("big.yaml"), "{error}");
    assert!(error.to_string().contains("1024"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let dir = TempDir::new("timeout");
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut options = SourceOptions::new(dir.path().join("cache"));
    options.timeout = Duration::from_secs(1);
    let cache = SourceCache::new(options);
    let error = cache
        .resolve(&public(&format!("git://127.0.0.1:{port}/repo.git")), "main")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    drop(silent);
}

#[tokio::test]
async fn a_damaged_mirror_is_detected_and_rebuilt() {
    let dir = TempDir::new("corrupt");
    let (repo, _) = sample_repo(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let cache = cache(&dir);
    let source = public(&daemon.url(&repo));
    let resolved = cache.resolve(&source, "main").await.unwrap();
    let mirror = cache.mirror_path(&source);

    // Garbage over every pack: objects are listed but unreadable.
    for entry in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pack") {
            let size = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![0x5a; size]).unwrap();
        }
    }
    let healed = cache.resolve(&source, "main").await.unwrap();
    assert_eq!(healed.commit, resolved.commit);
    assert!(
        healed.fetched.is_some(),
        "the rebuilt mirror was fetched anew"
    );
    let snapshot = cache.snapshot(&source, &healed, "apps/web").await.unwrap();
    assert!(snapshot.file("deployment.yaml").is_some());

    // A half-written mirror (no completion marker, no HEAD) is rebuilt too.
    std::fs::remove_file(mirror.join("windlass-mirror")).unwrap();
    std::fs::remove_file(mirror.join("HEAD")).unwrap();
    let again = cache.resolve(&source, "main").await.unwrap();
    assert_eq!(again.commit, resolved.commit);
    assert!(again.fetched.is_some());
}

#[test]
fn the_cli_resolves_lists_and_prints_files() {
    let dir = TempDir::new("cli");
    let (repo, _) = sample_repo(dir.path());
    let server = HttpGit::start(dir.path(), "deploy", "cli-secret");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_windlass"))
            .args(["source"])
            .args(args)
            .args(["--cache-dir", dir.path().join("cache").to_str().unwrap()])
            .env("GIT_PASSWORD", "cli-secret")
            .env("WRONG_PASSWORD", "not-it")
            .output()
            .unwrap()
    };
    let url = server.url(&repo);
    let auth = ["--username", "deploy", "--password-env", "GIT_PASSWORD"];

    let output = run(&[&["resolve", &url, "--ref", "^1"][..], &auth].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = git(&repo.work, &["rev-parse", "v1.4.2^{commit}"]);
    assert_eq!(stdout, format!("{expected}\trefs/tags/v1.4.2\n"));

    let output = run(&[&["ls", &url, "--glob", "refs/pull/*/head"][..], &auth].concat());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "{}\trefs/pull/42/head\n",
            git(&repo.work, &["rev-parse", "main"])
        )
    );

    let output = run(&[
        &["cat", &url, "--ref", "main", "shared/labels.yaml"][..],
        &auth,
    ]
    .concat());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "team: a\n");

    let wrong = ["--username", "deploy", "--password-env", "WRONG_PASSWORD"];
    let output = run(&[&["resolve", &url][..], &wrong].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: repository {url}: authentication failed")),
        "{stderr}"
    );
    assert!(!stderr.contains("not-it"));

    let output = run(&[
        &["resolve", &url][..],
        &["--username", "deploy", "--password-env", "UNSET_VAR_X"],
    ]
    .concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("environment variable UNSET_VAR_X is not set"),
        "{stderr}"
    );
}
