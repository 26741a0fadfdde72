//! Real git servers on 127.0.0.1 for the source tests, and helpers to build
//! repositories with the `git` command-line client.
//!
//! - [`GitDaemon`]: `git daemon` (git://), with `--verbose` logs that show each
//!   upload-pack request.
//! - [`HttpGit`]: `git http-backend` (smart HTTP) run as CGI behind a tiny
//!   HTTP front end with basic authentication, logging each request.
//! - [`Sshd`]: a throwaway OpenSSH `sshd` (own host key, one authorized key,
//!   unprivileged port) whose authorized key runs `git-shell`.
//!
//! Every server is killed when its value drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(purpose: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "windlass-test-{purpose}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `git` in `dir` with a fixed identity and no user configuration;
/// panics with git's output on failure. Returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "windlass-test")
        .env("GIT_AUTHOR_EMAIL", "test@windlass.invalid")
        .env("GIT_COMMITTER_NAME", "windlass-test")
        .env("GIT_COMMITTER_EMAIL", "test@windlass.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (install git): {e}"));
    assert!(
        output.status.success(),
        "git {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A served bare repository plus a working clone to make commits with.
pub struct TestRepo {
    pub bare: PathBuf,
    pub work: PathBuf,
    /// The repository's name under the served root (`name.git`).
    pub name: String,
}

impl TestRepo {
    /// Creates `<root>/<name>.git` with one commit on `main` holding `files`.
    pub fn create(root: &Path, name: &str, files: &[(&str, &str)]) -> TestRepo {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        git(
            root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let repo = TestRepo {
            bare,
            work,
            name: format!("{name}.git"),
        };
        repo.commit(files, "initial");
        repo
    }

    /// Writes `files` (path, content), commits, pushes the current branch;
    /// returns the new commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let full = self.work.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let branch = git(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Tags the current commit (annotated when `message` is given) and pushes it.
    pub fn tag(&self, name: &str, message: Option<&str>) {
        match message {
            Some(m) => git(&self.work, &["tag", "-a", name, "-m", m]),
            None => git(&self.work, &["tag", name]),
        };
        git(
            &self.work,
            &["push", "-q", "origin", &format!("refs/tags/{name}")],
        );
    }

    /// Pushes the current commit to any ref name (e.g. `refs/pull/42/head`).
    pub fn push_ref(&self, name: &str) {
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:{name}")],
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` serving every repository under `root`.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        let port = free_port();
        let log = root.join("git-daemon.log");
        let log_file = std::fs::File::create(&log).unwrap();
        // `git daemon` runs `git-daemon` as a child and would survive a kill
        // of the wrapper: start the daemon itself.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("running git (install git)");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--verbose",
                "--informative-errors",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.display()),
                &root.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting git daemon (install git)");
        wait_for_port(port, &mut child, &log, "git daemon");
        GitDaemon { child, port, log }
    }

    pub fn url(&self, repo: &TestRepo) -> String {
        format!("git://127.0.0.1:{}/{}", self.port, repo.name)
    }

    /// How many upload-pack requests (ref listings and fetches) the daemon
    /// has served.
    pub fn upload_pack_requests(&self) -> usize {
        // The daemon logs asynchronously from a child per connection.
        std::thread::sleep(Duration::from_millis(200));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request upload-pack"))
            .count()
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git http-backend` behind basic authentication.
pub struct HttpGit {
    pub port: u16,
    pub username: String,
    pub password: String,
    requests: Arc<Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    authorization: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpGit {
    pub fn start(root: &Path, username: &str, password: &str) -> HttpGit {
        use base64::Engine as _;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = HttpState {
            root: root.to_path_buf(),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            requests: requests.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(http_backend).with_state(state);
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        HttpGit {
            port,
            username: username.to_string(),
            password: password.to_string(),
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, repo: &TestRepo) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, repo.name)
    }

    /// Requests served, as `METHOD /path?query STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `git http-backend` as a CGI program for one request.
async fn http_backend(
    axum::extract::State(state): axum::extract::State<HttpState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;

    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let log = |status: u16| {
        state
            .requests
            .lock()
            .unwrap()
            .push(format!("{} {path}?{query} {status}", parts.method));
    };
    if header("authorization") != state.authorization {
        log(401);
        let mut response = (StatusCode::UNAUTHORIZED, "authentication required").into_response();
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"windlass-test\""),
        );
        return response;
    }
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let root = state.root.clone();
    let method = parts.method.to_string();
    let (content_type, encoding, protocol) = (
        header("content-type"),
        header("content-encoding"),
        header("git-protocol"),
    );
    let (path_info, query_string) = (path.clone(), query.clone());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", &path_info)
            .env("QUERY_STRING", &query_string)
            .env("CONTENT_TYPE", &content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &encoding)
            .env("GIT_PROTOCOL", &protocol)
            .env("REMOTE_USER", "windlass-test")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting git http-backend");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut stdout = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        let _ = writer.join();
        let _ = child.wait();
        stdout
    })
    .await
    .unwrap();

    // CGI response: headers, a blank line, the body.
    let mut reader = BufReader::new(&output[..]);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split(' ').next().unwrap_or("200");
                status = StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::OK);
            } else {
                headers.push((name.to_string(), value));
            }
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    log(status.as_u16());
    let mut response = (status, rest).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A throwaway OpenSSH server whose one authorized key may run git-shell.
pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The client's private key (OpenSSH format), authorized on the server.
    pub client_key: String,
    /// A known_hosts line for this server.
    pub known_hosts: String,
    pub user: String,
    log: PathBuf,
}

/// Generates an ed25519 key pair in `dir`; returns (private key, public key line).
pub fn ssh_keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("running ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string(),
    )
}

impl Sshd {
    pub fn start(dir: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: run deploy/local/prerequisites.sh (installs openssh-server)"
        );
        // sshd refuses to start without its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let (_, host_public) = ssh_keygen(dir, "ssh_host_ed25519_key");
        let (client_key, client_public) = ssh_keygen(dir, "client_key");
        std::fs::write(
            dir.join("authorized_keys"),
            format!(
                "command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",restrict {client_public}\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/ssh_host_ed25519_key\n\
                 PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting sshd");
        wait_for_port(port, &mut child, &log, "sshd");
        let host_key = host_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Sshd {
            child,
            port,
            client_key,
            known_hosts: format!("[127.0.0.1]:{port} {host_key}\n"),
            user,
            log,
        }
    }

    pub fn url(&self, repo: &TestRepo) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.bare.display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository `deploy.git` with one commit of `files`, served by its own
/// `git daemon`. Fields drop in order: the daemon stops before the
/// directory goes.
pub struct ServedRepo {
    pub daemon: GitDaemon,
    pub repo: TestRepo,
    /// `git://127.0.0.1:<port>/deploy.git`
    pub url: String,
    pub root: TempDir,
}

impl ServedRepo {
    pub fn start(purpose: &str, files: &[(&str, &str)]) -> ServedRepo {
        let root = TempDir::new(purpose);
        let repo = TestRepo::create(root.path(), "deploy", files);
        let daemon = GitDaemon::start(root.path());
        let url = daemon.url(&repo);
        ServedRepo {
            daemon,
            repo,
            url,
            root,
        }
    }
}
