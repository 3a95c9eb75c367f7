//! The false-positive corpus: real commands that a CI job runs every day and that must stay
//! clean under `guard run`. Each test runs one command (or one small build) under
//! `guard run --report R --trace T -- CMD` and asserts both that the JSON report has no
//! finding (verdict `pass`) *and* that the command really ran and succeeded — its exit status,
//! something it printed or produced, the number of execs in `stats.execs` and, where it says
//! something, which programs the trace recorded — so that no test can pass vacuously (a
//! command that was not found, or a guard that traced nothing, fails the test).
//!
//! The detection must fire when a web server is *started*, and only then. A build very often
//! mentions, downloads, configures or tests *for* a server, or talks HTTP as a client; none of
//! that is a finding. The groups:
//!
//! 1. `build_*` — compilers and a real build: a generated C project of 20 files (several named
//!    after servers: `http_server.c`, `nginx_conf.c`, `httpd_log.c`, …) built by `make -j2`
//!    with gcc and ar into a static library, and its test binary run (`make check`); plus
//!    `cc --version`, `ld --version`, `ar --version`. Thousands of these execs run in any CI.
//! 2. `pkg_*` — package managers, read-only and offline: `dpkg -l/-L/-S/-s` and
//!    `apt-cache policy` on the server packages themselves, `pip list`, `npm --version`,
//!    `npm config get cache`. Asking about nginx is not running it. Nothing is installed.
//! 3. `runner_*` — test runners whose tests are *about* servers: `python3 -m unittest` (and
//!    pytest when installed) on tests named `test_nginx_config`, `test_http_server_…`;
//!    `sh tests/run_tests.sh` grepping server configs; `make test` running both.
//! 4. `client_*` — HTTP clients (curl, wget, busybox wget, python's http.client and
//!    urllib.request) against a one-connection responder the test itself opens in Rust on
//!    127.0.0.1. A client is not a server; busybox is a multi-call binary whose `httpd` applet
//!    *is* detected, so its `wget` applet must not be.
//! 5. `pymod_*` — Python modules whose names are near `http.server`: `-m http.cookies`,
//!    `-m json.tool`, `-m pip`, `-m pydoc http.server`, `-c 'import http.server'`, and
//!    `-m py_compile` of a project's own `http/server.py`. Only `-m http.server` (or running
//!    that module's file) serves.
//! 6. `named_*` — files and programs named after servers that are not servers: reading
//!    `/etc/nginx/nginx.conf` and `/etc/apache2/ports.conf`, scripts named
//!    `nginx-config-lint.sh` and `check_httpd.sh`, a copy of `true` named `caddyfile-fmt`, a
//!    copy of `echo` under a directory `nginx/bin/`, `ls /usr/share/doc/lighttpd`,
//!    `file /usr/sbin/nginx`, `php -r/-v/-l` (only `php -S` serves), `busybox ls`,
//!    `busybox sh`, `busybox --list`; and `node`/`java` using or reporting on HTTP without
//!    serving. The detection compares file names exactly and matches interpreters by their
//!    arguments, so none of these may match.
//!
//! Executing a real server binary (`nginx -v`, `lighttpd -v`, `nginx -t`) is a finding by
//! design and is deliberately absent from this corpus (tests/servers.rs covers it).
//!
//! A test is skipped only when the tool it exercises is not installed, and then through
//! tests/common's skip(): a failure naming the package under CI, a counted skip otherwise. Every external command runs with a bounded timeout, in a temp dir of its own,
//! and after each run the test checks that nothing it started is left running.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{which, Out, TempDir};
use serde_json::Value;

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
// Temp dirs and bounded commands (tests/common)
// ---------------------------------------------------------------------------------------------

/// A directory of its own for one test (with an empty `home/`, mode 0755), removed at the end
/// (kept when GUARD_TEST_KEEP is set).
fn temp_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(&format!("fp-{tag}"));
    fs::create_dir_all(dir.join("home"))
        .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.path().display()));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Exit code, signal and both outputs of a finished command.
fn describe(o: &Out) -> String {
    format!(
        "exit code {:?}, signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.code, o.signal, o.stdout, o.stderr
    )
}

/// `argv` in `dir`, in a process group of its own, the whole group killed (and the test
/// failed) when it does not finish within `timeout`.
fn bounded(argv: &[&str], dir: &TempDir, timeout: Duration) -> common::Guard {
    common::command(argv[0], &argv[1..])
        .cwd(dir.path())
        .process_group()
        .bound(timeout)
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// Whether `tool` is in PATH: a counted skip locally, a failure under CI, when not.
fn need(tool: &str, test: &str) -> bool {
    common::need_program(test, tool, common::package_of(tool))
}

/// Runs a probe outside guard (bounded) in `dir`: did it exit 0?
fn probe_ok(dir: &TempDir, argv: &[&str]) -> bool {
    bounded(argv, dir, TOOL_TIMEOUT).run().code == Some(0)
}

// ---------------------------------------------------------------------------------------------
// Running guard
// ---------------------------------------------------------------------------------------------

struct GuardRun {
    ran: Out,
    report: Value,
    /// The exec records of the trace, read before the temp dir goes away.
    execs: Vec<Value>,
}

impl GuardRun {
    fn findings(&self) -> &Vec<Value> {
        self.report["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("report without findings: {}", self.report))
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- stats ---\n{}\n--- findings ---\n{}",
            describe(&self.ran),
            self.report["stats"],
            serde_json::to_string_pretty(&self.report["findings"]).unwrap()
        )
    }

    /// The file names of the executables the trace recorded, in order.
    fn exe_names(&self) -> Vec<String> {
        self.execs
            .iter()
            .filter_map(|e| e["exe"].as_str().map(|s| file_name(s).to_string()))
            .collect()
    }

    /// The resolved executables the trace recorded, in order.
    fn exes(&self) -> Vec<String> {
        self.execs
            .iter()
            .filter_map(|e| e["exe"].as_str().map(str::to_string))
            .collect()
    }

    /// Fails unless the trace recorded an exec whose executable's file name satisfies `pred`.
    fn assert_traced(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let names = self.exe_names();
        assert!(
            names.iter().any(|n| pred(n)),
            "no traced exec of {what}: {names:?}\n{}",
            self.describe()
        );
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_python(name: &str) -> bool {
    name.starts_with("python") || name.starts_with("pypy")
}

/// `guard run --report R --trace T -- ARGV...` in `dir`, HOME in the temp dir, proxy variables
/// removed (only 127.0.0.1 may be contacted); then checks that nothing the run started is left.
fn guard_run(
    dir: &TempDir,
    label: &str,
    argv: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> GuardRun {
    let report = dir.join(format!("{label}-r.json"));
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
        .env("NO_COLOR", "1")
        .env("HOME", dir.join("home"))
        .env("LC_ALL", "C");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let ran = cmd.run();
    // Nothing the run started (its process group, or anything naming its dir) is left.
    common::assert_no_leftovers(Some(ran.pid), &dir.s(), label);
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
    let execs = read_lossy(&trace)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "exec")
        .collect();
    GuardRun { ran, report, execs }
}

/// A run that must be clean: no finding, verdict pass, the command exited 0, and at least
/// `min_execs` execs were traced.
fn assert_clean(run: &GuardRun, what: &str, min_execs: u64) {
    let d = run.describe();
    assert!(run.findings().is_empty(), "{what}: no finding\n{d}");
    assert_eq!(run.report["verdict"], "pass", "{what}: verdict\n{d}");
    assert!(!run.ran.stderr.contains("FINDING"), "{what}\n{d}");
    assert!(run.ran.stderr.contains("PASS"), "{what}\n{d}");
    assert_eq!(
        run.ran.code,
        Some(0),
        "{what}: guard's (= the command's) status\n{d}"
    );
    assert_eq!(
        run.report["command"]["status"],
        serde_json::json!({"code": 0}),
        "{what}: the command itself succeeded\n{d}"
    );
    let execs = run.report["stats"]["execs"].as_u64().expect("stats.execs");
    assert!(
        execs >= min_execs,
        "{what}: {execs} execs traced, expected at least {min_execs}\n{d}"
    );
    assert_eq!(
        run.execs.len() as u64,
        execs,
        "{what}: the trace holds stats.execs exec records\n{d}"
    );
}

/// `guard_run` + `assert_clean`.
fn clean_run_in(
    dir: &TempDir,
    label: &str,
    argv: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    min_execs: u64,
) -> GuardRun {
    let run = guard_run(dir, label, argv, env, timeout);
    assert_clean(&run, &argv.join(" "), min_execs);
    run
}

/// `clean_run_in` in a temp dir of its own.
fn clean_run(tag: &str, argv: &[&str], env: &[(&str, &str)], min_execs: u64) -> GuardRun {
    let dir = temp_dir(tag);
    clean_run_in(&dir, "guard", argv, env, TOOL_TIMEOUT, min_execs)
}

// ---------------------------------------------------------------------------------------------
// 1. Compilers and a real build
// ---------------------------------------------------------------------------------------------

/// The library's modules: several are named after servers, as in any project that ships
/// configuration helpers for them.
const MODULES: [&str; 19] = [
    "http_server",
    "nginx_conf",
    "apache2_ports",
    "lighttpd_mod",
    "caddyfile",
    "httpd_log",
    "php_fpm_pool",
    "uwsgi_ini",
    "tomcat_xml",
    "haproxy_cfg",
    "url_parse",
    "base64",
    "crc32",
    "strbuf",
    "arena",
    "hashmap",
    "vec",
    "ini",
    "json_emit",
];

const C_MAKEFILE: &str = "CC = gcc
CFLAGS = -O1 -Wall -Wextra -Werror -Iinclude
SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:src/%.c=build/%.o)

all: run_tests

build:
\tmkdir -p build

build/%.o: src/%.c include/srv.h | build
\t$(CC) $(CFLAGS) -c $< -o $@

build/libsrv.a: $(OBJS)
\tar rcs $@ $^

run_tests: tests/run_tests.c build/libsrv.a
\t$(CC) $(CFLAGS) -o $@ tests/run_tests.c build/libsrv.a

check: run_tests
\t./run_tests > check.log
\tgrep -q 'all 19 checks passed' check.log

.PHONY: all check
";

/// Writes the C project: include/srv.h, src/*.c (19 modules) and tests/run_tests.c (20 C files).
fn write_c_project(dir: &TempDir) {
    let mut header = String::from("#ifndef SRV_H\n#define SRV_H\n");
    for m in MODULES {
        header.push_str(&format!("int {m}_value(int x);\n"));
    }
    header.push_str("#endif\n");
    dir.write("include/srv.h", &header);
    for (k, m) in MODULES.iter().enumerate() {
        dir.write(
            format!("src/{m}.c"),
            format!(
                "#include \"srv.h\"\n\n/* {m}: part of the test corpus */\nint {m}_value(int x)\n{{\n    return x * 3 + {k};\n}}\n"
            ),
        );
    }
    let mut test = String::from(
        "#include <stdio.h>\n#include \"srv.h\"\n\nint main(void)\n{\n    int passed = 0;\n",
    );
    for (k, m) in MODULES.iter().enumerate() {
        test.push_str(&format!(
            "    if ({m}_value({k}) == {k} * 3 + {k}) passed++; else printf(\"FAIL {m}\\n\");\n"
        ));
    }
    test.push_str(
        "    printf(\"all %d checks passed\\n\", passed);\n    return passed == 19 ? 0 : 1;\n}\n",
    );
    dir.write("tests/run_tests.c", &test);
    dir.write("Makefile", C_MAKEFILE);
}

#[test]
fn build_c_project_with_make_j2_and_check() {
    if !need("make", "build_c_project") || !need("gcc", "build_c_project") {
        return;
    }
    let dir = temp_dir("cbuild");
    write_c_project(&dir);
    let run = clean_run_in(
        &dir,
        "guard",
        &["make", "-j2", "check"],
        &[],
        BUILD_TIMEOUT,
        // per module: gcc, cc1, as; then ar, the link (gcc, cc1, as, collect2, ld), the test
        // binary, grep
        (MODULES.len() as u64) * 3 + 8,
    );
    let d = run.describe();
    assert_eq!(
        fs::read_to_string(dir.join("check.log")).unwrap_or_default(),
        "all 19 checks passed\n",
        "{d}"
    );
    for m in MODULES {
        assert!(dir.join(format!("build/{m}.o")).is_file(), "{m}.o\n{d}");
    }
    assert!(dir.join("build/libsrv.a").is_file(), "{d}");
    run.assert_traced("make", |n| n == "make");
    run.assert_traced("gcc", |n| n.contains("gcc"));
    run.assert_traced("cc1", |n| n == "cc1");
    run.assert_traced("the assembler", |n| n == "as" || n.ends_with("-as"));
    run.assert_traced("ar", |n| n == "ar" || n.ends_with("-ar"));
    run.assert_traced("the linker", |n| {
        n == "ld" || n.starts_with("ld.") || n.contains("-ld")
    });
    run.assert_traced("run_tests", |n| n == "run_tests");
    run.assert_traced("grep", |n| n == "grep");
    let cc1 = run.exe_names().iter().filter(|n| *n == "cc1").count();
    assert!(cc1 >= 20, "one cc1 per C file: {cc1}\n{d}");
}

#[test]
fn build_cc_version() {
    if !need("cc", "build_cc_version") {
        return;
    }
    let run = clean_run("cc-version", &["cc", "--version"], &[], 1);
    assert!(
        run.ran.stdout.contains("Free Software Foundation") || run.ran.stdout.contains("clang"),
        "{}",
        run.describe()
    );
}

#[test]
fn build_ld_version() {
    if !need("ld", "build_ld_version") {
        return;
    }
    let run = clean_run("ld-version", &["ld", "--version"], &[], 1);
    assert!(run.ran.stdout.contains("GNU ld"), "{}", run.describe());
    run.assert_traced("ld", |n| {
        n == "ld" || n.starts_with("ld.") || n.contains("-ld")
    });
}

#[test]
fn build_ar_version() {
    if !need("ar", "build_ar_version") {
        return;
    }
    let run = clean_run("ar-version", &["ar", "--version"], &[], 1);
    assert!(run.ran.stdout.contains("GNU ar"), "{}", run.describe());
}

// ---------------------------------------------------------------------------------------------
// 2. Package managers, read-only and offline
// ---------------------------------------------------------------------------------------------

/// Whether dpkg knows `pkg` as installed (checked outside guard).
fn dpkg_installed(pkg: &str, test: &str) -> bool {
    if !need("dpkg-query", test) {
        return false;
    }
    let dir = temp_dir("dpkg-probe");
    let ran = bounded(
        &["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg],
        &dir,
        TOOL_TIMEOUT,
    )
    .run();
    if ran.code == Some(0) && ran.stdout == "installed" {
        true
    } else {
        common::skip(test, &format!("package {pkg}"), pkg);
        false
    }
}

#[test]
fn pkg_dpkg_l_nginx_light() {
    if !dpkg_installed("nginx-light", "pkg_dpkg_l") {
        return;
    }
    let run = clean_run("dpkg-l", &["dpkg", "-l", "nginx-light"], &[], 1);
    assert!(
        run.ran
            .stdout
            .lines()
            .any(|l| l.starts_with("ii") && l.contains("nginx-light")),
        "{}",
        run.describe()
    );
}

#[test]
fn pkg_dpkg_s_and_l_list_usr_sbin_nginx() {
    if !dpkg_installed("nginx-light", "pkg_dpkg_L") || !Path::new("/usr/sbin/nginx").exists() {
        return;
    }
    let dir = temp_dir("dpkg-L");
    // Which package ships /usr/sbin/nginx (nginx-light itself up to Debian 11, a transitional
    // package depending on nginx since Debian 12).
    let search = clean_run_in(
        &dir,
        "search",
        &["dpkg", "-S", "/usr/sbin/nginx"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let owner = search
        .ran
        .stdout
        .lines()
        .find_map(|l| l.strip_suffix(": /usr/sbin/nginx"))
        .unwrap_or_else(|| panic!("dpkg -S: no owner\n{}", search.describe()))
        .to_string();
    let run = clean_run_in(
        &dir,
        "list",
        &["dpkg", "-L", "nginx-light", &owner],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let d = run.describe();
    assert!(
        run.ran.stdout.lines().any(|l| l == "/usr/sbin/nginx"),
        "{d}"
    );
    assert!(run.ran.stdout.contains("/usr/share/doc/nginx-light"), "{d}");
}

#[test]
fn pkg_dpkg_s_nginx_light_status() {
    if !dpkg_installed("nginx-light", "pkg_dpkg_s") {
        return;
    }
    let run = clean_run("dpkg-s", &["dpkg", "-s", "nginx-light"], &[], 1);
    let d = run.describe();
    assert!(run.ran.stdout.contains("Package: nginx-light"), "{d}");
    assert!(
        run.ran.stdout.contains("Status: install ok installed"),
        "{d}"
    );
}

#[test]
fn pkg_apt_cache_policy_servers() {
    if !need("apt-cache", "pkg_apt_cache_policy") {
        return;
    }
    let run = clean_run(
        "apt-policy",
        &["apt-cache", "policy", "nginx-light", "apache2"],
        &[],
        1,
    );
    let d = run.describe();
    assert!(run.ran.stdout.contains("nginx-light:"), "{d}");
    assert!(run.ran.stdout.contains("apache2:"), "{d}");
    assert!(run.ran.stdout.contains("Installed:"), "{d}");
    run.assert_traced("apt-cache", |n| n == "apt-cache");
}

/// pip, offline and without its version check.
const PIP_ENV: [(&str, &str); 2] = [
    ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ("PIP_NO_INDEX", "1"),
];

/// Whether `python3 -m pip` works (checked outside guard).
fn have_pip(test: &str) -> bool {
    if !need("python3", test) {
        return false;
    }
    let dir = temp_dir("pip-probe");
    if probe_ok(&dir, &["python3", "-m", "pip", "--version"]) {
        true
    } else {
        common::skip(test, "python3 -m pip", "python3-pip");
        false
    }
}

#[test]
fn pkg_pip_list() {
    if !have_pip("pkg_pip_list") {
        return;
    }
    let run = clean_run("pip-list", &["python3", "-m", "pip", "list"], &PIP_ENV, 1);
    let d = run.describe();
    assert!(run.ran.stdout.contains("Package"), "{d}");
    assert!(run.ran.stdout.lines().any(|l| l.starts_with("pip ")), "{d}");
    run.assert_traced("python", is_python);
}

#[test]
fn pkg_npm_version() {
    if !need("npm", "pkg_npm_version") {
        return;
    }
    let run = clean_run(
        "npm-version",
        &["npm", "--version"],
        &[("npm_config_update_notifier", "false")],
        1,
    );
    let v = run.ran.stdout.trim();
    assert!(
        !v.is_empty() && v.split('.').all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "{}",
        run.describe()
    );
    run.assert_traced("node", |n| n.starts_with("node"));
}

#[test]
fn pkg_npm_config_get_cache() {
    if !need("npm", "pkg_npm_config") {
        return;
    }
    let dir = temp_dir("npm-cache");
    let run = clean_run_in(
        &dir,
        "guard",
        &["npm", "config", "get", "cache"],
        &[("npm_config_update_notifier", "false")],
        TOOL_TIMEOUT,
        1,
    );
    // The default cache is ~/.npm, and HOME is the test's own.
    assert_eq!(
        run.ran.stdout.trim(),
        dir.at("home/.npm"),
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Test runners whose tests are about servers
// ---------------------------------------------------------------------------------------------

/// A unittest module whose tests check server configuration and import http.server.
const PY_TESTS: &str = r#"import http.server
import os
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def conf(name):
    with open(os.path.join(HERE, "conf", name)) as f:
        return f.read()


class ServerConfigTest(unittest.TestCase):
    def test_nginx_config(self):
        self.assertIn("worker_processes", conf("nginx.conf"))

    def test_http_server_handler_is_a_request_handler(self):
        self.assertTrue(
            issubclass(http.server.SimpleHTTPRequestHandler, http.server.BaseHTTPRequestHandler)
        )

    def test_apache2_ports_conf_listens_on_loopback(self):
        self.assertIn("Listen 127.0.0.1:8080", conf("ports.conf"))

    def test_caddyfile_site_address(self):
        self.assertTrue(conf("Caddyfile").startswith("127.0.0.1:8080"))


if __name__ == "__main__":
    unittest.main()
"#;

const RUN_TESTS_SH: &str = r#"#!/bin/sh
# The project's shell test suite: checks its server configuration files.
set -e
pass=0
# test: nginx.conf sets the worker count
grep -q 'worker_processes' conf/nginx.conf && pass=$((pass + 1))
# test: the Caddyfile names the site
grep -q '127.0.0.1' conf/Caddyfile && pass=$((pass + 1))
# test: ports.conf has a Listen line
test "$(grep -c '^Listen' conf/ports.conf)" -ge 1 && pass=$((pass + 1))
# test: lighttpd.conf is not empty
test "$(wc -l < conf/lighttpd.conf)" -ge 1 && pass=$((pass + 1))
echo "run_tests.sh: $pass passed, 0 failed"
"#;

const TEST_MAKEFILE: &str = "test: unit script

unit:
\tpython3 -m unittest -v test_servers_config

script:
\tsh tests/run_tests.sh

.PHONY: test unit script
";

/// Writes conf/ (nginx.conf, ports.conf, Caddyfile, lighttpd.conf), test_servers_config.py,
/// tests/run_tests.sh and a Makefile with a `test` target.
fn write_test_project(dir: &TempDir) {
    dir.write(
        "conf/nginx.conf",
        "worker_processes 1;\nevents {}\nhttp {\n    server { listen 127.0.0.1:8080; }\n}\n",
    );
    dir.write("conf/ports.conf", "Listen 127.0.0.1:8080\n");
    dir.write("conf/Caddyfile", "127.0.0.1:8080 {\n\trespond \"hi\"\n}\n");
    dir.write(
        "conf/lighttpd.conf",
        "server.modules = (\"mod_access\")\nserver.port = 8080\n",
    );
    dir.write("test_servers_config.py", PY_TESTS);
    dir.write_exec("tests/run_tests.sh", RUN_TESTS_SH);
    dir.write("Makefile", TEST_MAKEFILE);
}

#[test]
fn runner_python_unittest_on_server_tests() {
    if !need("python3", "runner_unittest") {
        return;
    }
    let dir = temp_dir("unittest");
    write_test_project(&dir);
    let run = clean_run_in(
        &dir,
        "guard",
        &["python3", "-m", "unittest", "-v", "test_servers_config"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let d = run.describe();
    assert!(run.ran.stderr.contains("test_nginx_config"), "{d}");
    assert!(
        run.ran
            .stderr
            .contains("test_http_server_handler_is_a_request_handler"),
        "{d}"
    );
    assert!(run.ran.stderr.contains("Ran 4 tests"), "{d}");
    assert!(run.ran.stderr.contains("\nOK"), "{d}");
    run.assert_traced("python", is_python);
}

#[test]
fn runner_pytest_on_server_tests() {
    if !need("python3", "runner_pytest") {
        return;
    }
    let dir = temp_dir("pytest");
    // The `python3` first on PATH may be another build (pyenv, a virtualenv) that does not see
    // Debian's python3-pytest: Debian's own interpreter is tried next.
    let Some(python) = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| probe_ok(&dir, &[p, "-c", "import pytest"]))
    else {
        common::skip("runner_pytest", "pytest", "python3-pytest");
        return;
    };
    write_test_project(&dir);
    let run = clean_run_in(
        &dir,
        "guard",
        &[
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_servers_config.py",
        ],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    assert!(run.ran.stdout.contains("4 passed"), "{}", run.describe());
}

#[test]
fn runner_shell_test_script() {
    let dir = temp_dir("sh-tests");
    write_test_project(&dir);
    // sh, then grep, grep, grep (in a command substitution), wc
    let run = clean_run_in(
        &dir,
        "guard",
        &["sh", "tests/run_tests.sh"],
        &[],
        TOOL_TIMEOUT,
        5,
    );
    assert_eq!(
        run.ran.stdout,
        "run_tests.sh: 4 passed, 0 failed\n",
        "{}",
        run.describe()
    );
    run.assert_traced("grep", |n| n == "grep");
    run.assert_traced("wc", |n| n == "wc");
}

#[test]
fn runner_make_test() {
    if !need("make", "runner_make_test") || !need("python3", "runner_make_test") {
        return;
    }
    let dir = temp_dir("make-test");
    write_test_project(&dir);
    // make, python3, sh, grep x3, wc
    let run = clean_run_in(&dir, "guard", &["make", "test"], &[], TOOL_TIMEOUT, 7);
    let d = run.describe();
    assert!(run.ran.stderr.contains("Ran 4 tests"), "{d}");
    assert!(
        run.ran.stdout.contains("run_tests.sh: 4 passed, 0 failed"),
        "{d}"
    );
    run.assert_traced("make", |n| n == "make");
    run.assert_traced("python", is_python);
}

// ---------------------------------------------------------------------------------------------
// 4. HTTP clients against a responder of the test's own
// ---------------------------------------------------------------------------------------------

/// A minimal HTTP responder on 127.0.0.1 (a kernel-chosen port) in the test process, not
/// traced: a thread that accepts one connection and answers `HTTP/1.0 200 OK`.
struct Responder {
    port: u16,
    body: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Option<String>>>,
}

impl Responder {
    fn start(tag: &str) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let body = format!("guard-false-positives-{tag}-{port}\n");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let answer = body.clone();
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
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
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = s.flush();
                        let head = String::from_utf8_lossy(&req);
                        return Some(head.lines().next().unwrap_or("").to_string());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            None
        });
        Responder {
            port,
            body,
            stop,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Stops the thread; the request line it answered, if any.
    fn finish(mut self) -> Option<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().and_then(|h| h.join().ok()).flatten()
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

/// Runs the client built by `argv(url)` against a fresh responder: clean, it printed the body,
/// and the responder answered its GET.
fn client_fetches(tag: &str, argv: impl Fn(&str) -> Vec<String>, check_exe: fn(&str) -> bool) {
    let responder = Responder::start(tag);
    let argv = argv(&responder.url());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let run = clean_run(tag, &argv, &[], 1);
    let d = run.describe();
    assert!(
        run.ran.stdout.contains(responder.body.trim_end()),
        "{tag}: the client must have printed the body\n{d}"
    );
    run.assert_traced(tag, check_exe);
    let request = responder.finish();
    assert!(
        request.as_deref().is_some_and(|r| r.starts_with("GET / ")),
        "{tag}: request seen by the responder: {request:?}\n{d}"
    );
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn client_curl() {
    if !need("curl", "client_curl") {
        return;
    }
    client_fetches(
        "curl",
        |url| strs(&["curl", "-fsS", "--noproxy", "*", "--max-time", "10", url]),
        |n| n == "curl",
    );
}

#[test]
fn client_wget() {
    if !need("wget", "client_wget") {
        return;
    }
    client_fetches(
        "wget",
        |url| {
            strs(&[
                "wget",
                "-q",
                "-O",
                "-",
                "--no-proxy",
                "--no-hsts",
                "--tries=1",
                "--timeout=10",
                url,
            ])
        },
        |n| n == "wget",
    );
}

#[test]
fn client_busybox_wget() {
    if !need("busybox", "client_busybox_wget") {
        return;
    }
    // No -T: busybox 1.35 (Debian 12) wget crashes with SIGSEGV on -T; run_bounded bounds it.
    client_fetches(
        "busybox-wget",
        |url| strs(&["busybox", "wget", "-q", "-O", "-", url]),
        |n| n == "busybox",
    );
}

#[test]
fn client_python_http_client() {
    if !need("python3", "client_http_client") {
        return;
    }
    client_fetches(
        "py-http-client",
        |url| {
            let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
            vec![
                "python3".into(),
                "-c".into(),
                format!(
                    "import http.client\n\
                     c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
                     c.request('GET', '/')\n\
                     r = c.getresponse()\n\
                     print(r.status, r.read().decode(), end='')"
                ),
            ]
        },
        is_python,
    );
}

#[test]
fn client_python_urllib() {
    if !need("python3", "client_urllib") {
        return;
    }
    client_fetches(
        "py-urllib",
        |url| {
            vec![
                "python3".into(),
                "-c".into(),
                format!(
                    "import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).read().decode(), end='')"
                ),
            ]
        },
        is_python,
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Python modules whose names are near http.server
// ---------------------------------------------------------------------------------------------

#[test]
fn pymod_http_cookies() {
    if !need("python3", "pymod_http_cookies") {
        return;
    }
    // Runs the module's own checks and prints nothing: the exit status and the trace say it ran.
    let run = clean_run("py-cookies", &["python3", "-m", "http.cookies"], &[], 1);
    run.assert_traced("python", is_python);
}

#[test]
fn pymod_pip_version() {
    if !have_pip("pymod_pip_version") {
        return;
    }
    let run = clean_run(
        "pip-version",
        &["python3", "-m", "pip", "--version"],
        &PIP_ENV,
        1,
    );
    assert!(run.ran.stdout.starts_with("pip "), "{}", run.describe());
}

#[test]
fn pymod_json_tool() {
    if !need("python3", "pymod_json_tool") {
        return;
    }
    let dir = temp_dir("json-tool");
    dir.write(
        "servers.json",
        r#"{"nginx":{"listen":"127.0.0.1:8080"},"http.server":{"port":8000}}"#,
    );
    let run = clean_run_in(
        &dir,
        "guard",
        &["python3", "-m", "json.tool", "--sort-keys", "servers.json"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let d = run.describe();
    let parsed: Value = serde_json::from_str(&run.ran.stdout)
        .unwrap_or_else(|e| panic!("json.tool output is not JSON: {e}\n{d}"));
    assert_eq!(parsed["http.server"]["port"], 8000, "{d}");
    assert!(run.ran.stdout.contains("\n    \"http.server\": {"), "{d}");
}

#[test]
fn pymod_import_http_server() {
    if !need("python3", "pymod_import_http_server") {
        return;
    }
    // Importing the server module is not serving.
    let run = clean_run(
        "py-import-server",
        &[
            "python3",
            "-c",
            "import http.server; print(http.server.__file__)",
        ],
        &[],
        1,
    );
    assert!(
        run.ran.stdout.trim_end().ends_with("/http/server.py"),
        "{}",
        run.describe()
    );
}

#[test]
fn pymod_pydoc_http_server() {
    if !need("python3", "pymod_pydoc") {
        return;
    }
    // Reading the documentation of the server module is not running it.
    let run = clean_run(
        "py-pydoc",
        &["python3", "-m", "pydoc", "http.server"],
        &[("PAGER", "cat")],
        1,
    );
    assert!(
        run.ran.stdout.contains("SimpleHTTPRequestHandler"),
        "{}",
        run.describe()
    );
}

#[test]
fn pymod_py_compile_of_a_project_http_server_module() {
    if !need("python3", "pymod_py_compile") {
        return;
    }
    // A project's own package `app/http/server.py`, byte-compiled (as packaging does), not run.
    let dir = temp_dir("py-compile");
    dir.write("app/__init__.py", "");
    dir.write("app/http/__init__.py", "");
    dir.write(
        "app/http/server.py",
        "def handler(path):\n    return 'served ' + path\n",
    );
    let run = clean_run_in(
        &dir,
        "guard",
        &["python3", "-m", "py_compile", "app/http/server.py"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let compiled = fs::read_dir(dir.join("app/http/__pycache__"))
        .map(|it| {
            it.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("server."))
        })
        .unwrap_or(false);
    assert!(compiled, "no server.*.pyc\n{}", run.describe());
}

// ---------------------------------------------------------------------------------------------
// 6. Files and programs named after servers that are not servers
// ---------------------------------------------------------------------------------------------

#[test]
fn named_cat_nginx_conf() {
    if !Path::new("/etc/nginx/nginx.conf").is_file() {
        common::skip(
            "named_cat_nginx_conf",
            "/etc/nginx/nginx.conf",
            "nginx-light",
        );
        return;
    }
    let run = clean_run("cat-nginx", &["cat", "/etc/nginx/nginx.conf"], &[], 1);
    assert_eq!(
        run.ran.stdout,
        read_lossy(Path::new("/etc/nginx/nginx.conf")),
        "{}",
        run.describe()
    );
}

#[test]
fn named_grep_listen_in_apache2_ports_conf() {
    if !Path::new("/etc/apache2/ports.conf").is_file() {
        common::skip("named_grep_apache2", "/etc/apache2/ports.conf", "apache2");
        return;
    }
    let run = clean_run(
        "grep-apache2",
        &["grep", "-r", "Listen", "/etc/apache2/ports.conf"],
        &[],
        1,
    );
    assert!(
        run.ran.stdout.lines().any(|l| l.starts_with("Listen")),
        "{}",
        run.describe()
    );
}

#[test]
fn named_nginx_config_lint_script() {
    let dir = temp_dir("nginx-lint");
    write_test_project(&dir);
    let script = dir.write_exec(
        "nginx-config-lint.sh",
        "#!/bin/sh\nset -e\ngrep -q worker_processes \"$1\"\necho \"nginx-config-lint: $1 ok\"\n",
    );
    let script = script.to_str().unwrap();
    let run = clean_run_in(
        &dir,
        "guard",
        &[script, "conf/nginx.conf"],
        &[],
        TOOL_TIMEOUT,
        2,
    );
    assert_eq!(
        run.ran.stdout,
        "nginx-config-lint: conf/nginx.conf ok\n",
        "{}",
        run.describe()
    );
    run.assert_traced("grep", |n| n == "grep");
}

#[test]
fn named_check_httpd_script() {
    let dir = temp_dir("check-httpd");
    // Tests *for* a server without running it.
    let script = dir.write_exec(
        "check_httpd.sh",
        "#!/bin/sh\nfor s in /usr/sbin/apache2 /usr/sbin/httpd /usr/sbin/nginx; do\n    \
         if test -x \"$s\"; then echo \"check_httpd: $s present\"; else echo \"check_httpd: $s absent\"; fi\n\
         done\nls -d /etc > /dev/null\n",
    );
    let script = script.to_str().unwrap();
    let run = clean_run_in(&dir, "guard", &[script], &[], TOOL_TIMEOUT, 2);
    let d = run.describe();
    assert_eq!(run.ran.stdout.lines().count(), 3, "{d}");
    assert!(
        run.ran.stdout.contains("check_httpd: /usr/sbin/httpd "),
        "{d}"
    );
    run.assert_traced("ls", |n| n == "ls");
}

#[test]
fn named_caddyfile_fmt_copy_of_true() {
    let Some(truth) = which("true") else {
        common::skip("named_caddyfile_fmt", "true", "coreutils");
        return;
    };
    let dir = temp_dir("caddyfile-fmt");
    write_test_project(&dir);
    let tool = dir.copy_exec(truth.to_str().unwrap(), "bin/caddyfile-fmt");
    let tool = tool.to_str().unwrap();
    let run = clean_run_in(
        &dir,
        "guard",
        &[tool, "--overwrite", "conf/Caddyfile"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    assert!(
        run.exes().iter().any(|e| e == tool),
        "caddyfile-fmt traced by its path\n{}",
        run.describe()
    );
}

#[test]
fn named_program_under_an_nginx_bin_dir() {
    let Some(echo) = which("echo") else {
        common::skip("named_nginx_bin_dir", "echo", "coreutils");
        return;
    };
    let dir = temp_dir("nginx-bin");
    let render = dir.copy_exec(echo.to_str().unwrap(), "nginx/bin/render");
    let render = render.to_str().unwrap();
    let run = clean_run_in(
        &dir,
        "guard",
        &[render, "rendered", "nginx.conf.tmpl"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    let d = run.describe();
    assert_eq!(run.ran.stdout, "rendered nginx.conf.tmpl\n", "{d}");
    assert!(run.exes().iter().any(|e| e == render), "{d}");
}

#[test]
fn named_ls_lighttpd_docs() {
    if !Path::new("/usr/share/doc/lighttpd").is_dir() {
        common::skip(
            "named_ls_lighttpd_docs",
            "/usr/share/doc/lighttpd",
            "lighttpd",
        );
        return;
    }
    let run = clean_run("ls-lighttpd", &["ls", "/usr/share/doc/lighttpd"], &[], 1);
    assert!(run.ran.stdout.contains("copyright"), "{}", run.describe());
}

#[test]
fn named_file_usr_sbin_nginx() {
    if !need("file", "named_file_nginx") {
        return;
    }
    if !Path::new("/usr/sbin/nginx").exists() {
        common::skip("named_file_nginx", "/usr/sbin/nginx", "nginx-light");
        return;
    }
    let run = clean_run("file-nginx", &["file", "-L", "/usr/sbin/nginx"], &[], 1);
    let d = run.describe();
    assert!(run.ran.stdout.starts_with("/usr/sbin/nginx:"), "{d}");
    assert!(run.ran.stdout.contains("ELF"), "{d}");
}

#[test]
fn named_php_r() {
    if !need("php", "named_php_r") {
        return;
    }
    let run = clean_run("php-r", &["php", "-r", "echo 1;"], &[], 1);
    assert_eq!(run.ran.stdout, "1", "{}", run.describe());
}

#[test]
fn named_php_v() {
    if !need("php", "named_php_v") {
        return;
    }
    let run = clean_run("php-v", &["php", "-v"], &[], 1);
    assert!(run.ran.stdout.starts_with("PHP "), "{}", run.describe());
}

#[test]
fn named_php_lint() {
    if !need("php", "named_php_lint") {
        return;
    }
    let dir = temp_dir("php-l");
    dir.write(
        "server.php",
        "<?php\n// the router of `php -S` in production; only linted here\n\
         function route(string $uri): string { return 'served ' . $uri; }\n",
    );
    let run = clean_run_in(
        &dir,
        "guard",
        &["php", "-l", "server.php"],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    assert!(
        run.ran.stdout.contains("No syntax errors detected"),
        "{}",
        run.describe()
    );
}

#[test]
fn named_busybox_ls() {
    if !need("busybox", "named_busybox_ls") {
        return;
    }
    let dir = temp_dir("busybox-ls");
    dir.write("httpd.conf", "H:/www\n");
    let run = clean_run_in(
        &dir,
        "guard",
        &["busybox", "ls", &dir.s()],
        &[],
        TOOL_TIMEOUT,
        1,
    );
    assert!(
        run.ran.stdout.lines().any(|l| l == "httpd.conf"),
        "{}",
        run.describe()
    );
    run.assert_traced("busybox", |n| n == "busybox");
}

#[test]
fn named_busybox_sh() {
    if !need("busybox", "named_busybox_sh") {
        return;
    }
    let run = clean_run("busybox-sh", &["busybox", "sh", "-c", "echo hi"], &[], 1);
    assert_eq!(run.ran.stdout, "hi\n", "{}", run.describe());
}

#[test]
fn named_busybox_list_of_applets() {
    if !need("busybox", "named_busybox_list") {
        return;
    }
    // Listing the applets (httpd among them) is not running one.
    let run = clean_run("busybox-list", &["busybox", "--list"], &[], 1);
    assert!(
        run.ran.stdout.lines().any(|l| l == "sh"),
        "{}",
        run.describe()
    );
}

#[test]
fn named_node_uses_the_http_module_without_serving() {
    if !need("node", "named_node_http") {
        return;
    }
    let run = clean_run(
        "node-http",
        &[
            "node",
            "-e",
            "const http = require('http'); console.log(http.STATUS_CODES[200], typeof http.createServer)",
        ],
        &[],
        1,
    );
    assert_eq!(run.ran.stdout, "OK function\n", "{}", run.describe());
}

#[test]
fn named_java_version() {
    if !need("java", "named_java_version") {
        return;
    }
    let run = clean_run("java-version", &["java", "-version"], &[], 1);
    assert!(run.ran.stderr.contains("version"), "{}", run.describe());
    run.assert_traced("java", |n| n == "java");
}
