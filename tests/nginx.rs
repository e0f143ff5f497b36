//! nginx under `usertrap stat -f` (issue 9): a master that runs as root and
//! workers that switch to user nobody, on a loopback port, serving a few
//! thousand requests from a bounded client. Natively and under each
//! backend: the same responses, the same (empty) error.log, the same exit;
//! under usertrap every worker's report is in the aggregate and nobody is
//! missing. nginx comes from .ci/deps.sh (nginx-light).

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 2000;
const WORKERS: usize = 2;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A default-like configuration in `dir`: a master and WORKERS workers (as
/// nobody when we are root), logs and temporary files in `dir`.
fn setup(dir: &Path, port: u16) -> PathBuf {
    for d in ["www", "logs", "tmp"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("www/index.html"), "<p>hello from nginx</p>\n").unwrap();
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.join("www/big.bin"), big).unwrap();
    let user = if is_root() { "user nobody nogroup;\n" } else { "" };
    let d = dir.display();
    let conf = format!(
        "daemon off;\n{user}worker_processes {WORKERS};\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  types {{ text/html html; }}\n  default_type application/octet-stream;\n  access_log off;\n  sendfile on;\n  \
         client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
         server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).unwrap();
    path
}

/// One GET over a new connection, bounded in time: (status line, body).
fn get(port: u16, path: &str) -> std::io::Result<(String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    Ok((head.lines().next().unwrap_or("").to_string(), resp.get(split + 4..).unwrap_or_default().to_vec()))
}

struct Run {
    responses: Vec<(String, Vec<u8>)>,
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error_log: String,
}

/// Starts `cmd` (nginx, or usertrap stat running it), serves REQUESTS,
/// stops nginx gracefully (SIGQUIT to the master) and waits for the end.
fn serve(dir: &Path, port: u16, mut cmd: Command) -> Run {
    let out = dir.join("out.txt");
    let err = dir.join("err.txt");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .env_remove("LD_PRELOAD")
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("USERTRAP_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("start nginx");
    let cleanup = |child: &mut Child, why: &str| -> ! {
        let _ = Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
        let _ = child.wait();
        panic!("{why}; stderr:\n{}", fs::read_to_string(dir.join("err.txt")).unwrap_or_default());
    };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(20) {
            cleanup(&mut child, "nginx did not start listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut responses = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        match get(port, if i % 10 == 0 { "/big.bin" } else { "/index.html" }) {
            Ok(r) => responses.push(r),
            // Stop this nginx too (the whole group): none may outlive the test.
            Err(e) => cleanup(&mut child, &format!("request {i}: {e}")),
        }
    }
    let pid = fs::read_to_string(dir.join("nginx.pid")).unwrap_or_default();
    let ok = Command::new("kill").args(["-QUIT", pid.trim()]).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        cleanup(&mut child, "cannot send SIGQUIT to the master");
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            cleanup(&mut child, "nginx did not stop after SIGQUIT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        responses,
        status,
        stdout: fs::read(&out).unwrap(),
        stderr: fs::read(&err).unwrap(),
        error_log: fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default(),
    }
}

fn nginx_under_stat(backend: Backend) {
    let nginx = which("nginx");
    let dir = scratch_dir("nginx", backend);

    fresh_dir(&dir);
    let port = free_port();
    let conf = setup(&dir, port);
    let mut cmd = Command::new(&nginx);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("logs/error.log"));
    let native = serve(&dir, port, cmd);

    fresh_dir(&dir);
    let port = free_port();
    let conf = setup(&dir, port);
    let agg = dir.join("aggregate.txt");
    let mut cmd = Command::new(repo_root().join("target/release/usertrap"));
    cmd.args(["stat", "-f", "--backend", backend.name(), "-o"]).arg(&agg).arg("--").arg(&nginx);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("logs/error.log"));
    let traced = serve(&dir, port, cmd);

    assert_eq!(
        traced.status.code(),
        native.status.code(),
        "{backend}: exit; stderr:\n{}",
        String::from_utf8_lossy(&traced.stderr)
    );
    assert_eq!(traced.stdout, native.stdout, "{backend}: stdout");
    assert_eq!(String::from_utf8_lossy(&traced.stderr), String::from_utf8_lossy(&native.stderr), "{backend}: stderr");
    assert_eq!(traced.error_log, native.error_log, "{backend}: error.log");
    for (i, (n, t)) in native.responses.iter().zip(&traced.responses).enumerate() {
        assert_eq!(n.0, "HTTP/1.1 200 OK", "native request {i}");
        assert!(
            n == t,
            "{backend}: request {i}: native {:?} ({} bytes), traced {:?} ({} bytes)",
            n.0,
            n.1.len(),
            t.0,
            t.1.len()
        );
    }

    let text = fs::read_to_string(&agg).unwrap();
    assert!(!text.contains("did not report"), "{backend}:\n{text}");
    let reports = text.lines().filter(|l| l.starts_with("usertrap: pid ") && l.contains(" (nginx), ")).count();
    assert!(reports > WORKERS, "{backend}: the master and every worker report ({reports} reports):\n{text}");
    // Every connection was accepted by a worker: their figures are in.
    let accept =
        text.lines().rev().find(|l| l.ends_with("  accept4")).unwrap_or_else(|| panic!("no accept4 row:\n{text}"));
    let calls: usize = accept.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(calls >= REQUESTS, "{backend}: accept4 {calls} calls for {REQUESTS} connections:\n{accept}");
}

#[test]
fn nginx_workers_report_seccomp() {
    nginx_under_stat(Backend::Seccomp);
}

#[test]
fn nginx_workers_report_sud() {
    nginx_under_stat(Backend::Sud);
}
