//! Git source benchmark: windlass against the `git` command-line client doing
//! the same work, in the same run, on 127.0.0.1 (`git daemon`).
//!
//! 1. No-op poll of an unchanged remote: `resolve` (one ref advertisement, no
//!    pack) vs `git ls-remote`.
//! 2. Incremental fetch of one new commit into a mirror of a 50,000-file
//!    repository: `resolve` vs `git fetch --depth=1` into a shallow bare clone.
//! 3. Reading all files under a 1,000-file path from the object database:
//!    `snapshot` vs `git archive` of that path.
//!
//! Reports medians and the ratio windlass / git (below 1: windlass is faster).
//! The git floor includes starting a process, which windlass does not pay.
//! The git client speaks protocol v0, as libgit2 does: over git:// its
//! protocol v2 stalls about 40 ms per request on this machine, which would
//! flatter windlass.
//! Run: `cargo bench --bench source`.

#[allow(dead_code)]
#[path = "../tests/support/git.rs"]
mod git_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git_support::{GitDaemon, TempDir, git};
use windlass::source::{Credentials, Repo, SourceCache, SourceOptions};

const FILES: usize = 50_000;
const FILES_PER_APP: usize = 1_000;

fn main() {
    let dir = TempDir::new("bench-source");
    let root = dir.path();
    println!(
        "source benchmark: {FILES} files in {} apps of {FILES_PER_APP}",
        FILES / FILES_PER_APP
    );
    let started = Instant::now();
    let work = create_large_repository(root);
    println!(
        "  (built the repository in {:.1}s)",
        started.elapsed().as_secs_f64()
    );

    let daemon = GitDaemon::start(root);
    let url = format!("git://127.0.0.1:{}/large.git", daemon.port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = SourceCache::new(SourceOptions::new(root.join("cache")));
    let repo = Repo::new(&url, Credentials::None).unwrap();

    // Both sides start from a shallow mirror of main.
    let started = Instant::now();
    runtime.block_on(cache.resolve(&repo, "main")).unwrap();
    println!(
        "  (windlass initial shallow fetch {:.2}s)",
        started.elapsed().as_secs_f64()
    );
    let git_mirror = root.join("git-mirror.git");
    let started = Instant::now();
    run_git(
        root,
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "-q",
            "--bare",
            "--depth=1",
            "--single-branch",
            "--branch=main",
            &url,
            git_mirror.to_str().unwrap(),
        ],
    );
    println!(
        "  (git initial shallow clone {:.2}s)",
        started.elapsed().as_secs_f64()
    );

    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>8}   target",
        "operation (median)", "windlass", "git", "ratio"
    );

    // 1. No-op poll.
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let t = Instant::now();
        let resolved = runtime.block_on(cache.resolve(&repo, "main")).unwrap();
        ours.push(t.elapsed());
        assert!(
            resolved.fetched.is_none(),
            "an unchanged poll must not fetch"
        );
        let t = Instant::now();
        run_git(
            root,
            &[
                "-c",
                "protocol.version=0",
                "ls-remote",
                &url,
                "refs/heads/main",
            ],
        );
        floor.push(t.elapsed());
    }
    report(
        "no-op poll (ls-remote, no pack)",
        &mut ours,
        &mut floor,
        "< 20 ms",
    );

    // 2. Incremental fetch of one new commit.
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for i in 0..10 {
        // An existing file: app i, its 8th file.
        let index = i * FILES_PER_APP + 7;
        let file = work.join(format!("apps/app-{i:03}/file-{index:05}.yaml"));
        assert!(file.exists(), "{}", file.display());
        std::fs::write(&file, format!("kind: ConfigMap\nrevision: {i}\n")).unwrap();
        git(&work, &["commit", "-q", "-am", &format!("change {i}")]);
        git(&work, &["push", "-q", "origin", "main"]);
        let t = Instant::now();
        let resolved = runtime.block_on(cache.resolve(&repo, "main")).unwrap();
        ours.push(t.elapsed());
        assert!(resolved.fetched.is_some());
        let t = Instant::now();
        run_git(
            &git_mirror,
            &[
                "-c",
                "protocol.version=0",
                "fetch",
                "-q",
                "--depth=1",
                "origin",
                "+refs/heads/main:refs/heads/main",
            ],
        );
        floor.push(t.elapsed());
    }
    report(
        "incremental fetch, 1 new commit",
        &mut ours,
        &mut floor,
        "< 300 ms",
    );

    // 3. Reading a 1,000-file path.
    let resolved = runtime.block_on(cache.resolve(&repo, "main")).unwrap();
    let commit = resolved.commit.to_string();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let snapshot = runtime
            .block_on(cache.snapshot(&repo, &resolved, "apps/app-007"))
            .unwrap();
        ours.push(t.elapsed());
        assert_eq!(snapshot.file_paths().count(), FILES_PER_APP);
        let t = Instant::now();
        let output = Command::new("git")
            .args(["archive", "--format=tar", &format!("{commit}:apps/app-007")])
            .current_dir(&git_mirror)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        floor.push(t.elapsed());
        assert!(output.status.success() && output.stdout.len() > FILES_PER_APP * 512);
    }
    report("read 1,000 files under a path", &mut ours, &mut floor, "");
}

fn report(name: &str, ours: &mut [Duration], floor: &mut [Duration], target: &str) {
    let (ours, floor) = (median(ours), median(floor));
    println!(
        "{name:<34} {:>9.2} ms {:>9.2} ms {:>8.2}   {target}",
        ours.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn run_git(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// `large.git` with 50 apps of 1,000 small YAML files each, built with
/// `git fast-import` (much faster than writing 50,000 files and `git add`),
/// plus a working clone to push new commits from.
fn create_large_repository(root: &std::path::Path) -> std::path::PathBuf {
    let bare = root.join("large.git");
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let mut import = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&bare)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = import.stdin.as_mut().unwrap();
        let mut stream = std::io::BufWriter::new(stdin);
        for i in 0..FILES {
            let content = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i:05}\ndata:\n  index: \"{i}\"\n"
            );
            write!(
                stream,
                "blob\nmark :{}\ndata {}\n{content}\n",
                i + 1,
                content.len()
            )
            .unwrap();
        }
        let message = "initial";
        write!(
            stream,
            "commit refs/heads/main\ncommitter bench <bench@windlass.invalid> 1767225600 +0000\ndata {}\n{message}\n",
            message.len()
        )
        .unwrap();
        for i in 0..FILES {
            writeln!(
                stream,
                "M 100644 :{} apps/app-{:03}/file-{i:05}.yaml",
                i + 1,
                i / FILES_PER_APP
            )
            .unwrap();
        }
        writeln!(stream).unwrap();
        stream.flush().unwrap();
    }
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success(), "git fast-import failed");
    let work = root.join("large-work");
    git(
        root,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    work
}
