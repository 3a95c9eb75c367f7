//! The GitHub Action end to end, against the runner's protocol: a fake runner (a shell script,
//! standing for the runner's worker) sets the environment a real runner sets, runs
//! `node dist/pre.js`, then its steps as its own children — one starts a real web server, one
//! carries workflow-command injections in its argv — then `node dist/post.js` with the state
//! pre saved. The GitHub API is a local server that checks request bodies against GitHub's
//! OpenAPI description.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::GUARD;
const TOKEN: &str = "ghs_test_token_0123456789";
/// The job's commit (`GITHUB_SHA`), whose files the API mock serves.
const COMMIT: &str = "3dca65fa3e8d4b3da3f3d056c59aee1c50f41390";
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Mock {
    child: std::process::Child,
    port: u16,
}

impl Mock {
    fn start() -> Mock {
        // The job's commit has no allowlist: the default file is looked up there, not found.
        let files = common::tempdir("action-commit");
        let mut child = Command::new("node")
            .arg(repo().join("tests/js/mock_github.js"))
            .args(["--token", TOKEN, "--pr", "7", "--seed", "3"])
            .args(["--files".as_ref(), files.as_os_str()])
            .args(["--commit", COMMIT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("mock port: {line:?}"));
        Mock { child, port }
    }

    fn state(&self) -> serde_json::Value {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        use std::io::Write;
        write!(s, "GET /__state HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WORKFLOW: &str = "\
name: ci
on: pull_request
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: org/webserver-exec-guard@v1
      - name: Build
        run: make
      - id: integration
        run: ./scripts/integration.sh
      - id: hostile
        run: ./bin/nginx -t
";

struct Job {
    dir: PathBuf,
    code: Option<i32>,
    post_stdout: String,
    summary: String,
    outputs: String,
}

/// Runs a whole job through the fake runner, in `mode`.
fn job(name: &str, mode: &str, mock: &Mock) -> Job {
    let dir = common::tempdir(&format!("action-{name}"));
    let ws = dir.join("workspace");
    std::fs::create_dir_all(ws.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(ws.join("scripts")).unwrap();
    std::fs::create_dir_all(ws.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("temp")).unwrap();
    std::fs::write(ws.join(".github/workflows/ci.yml"), WORKFLOW).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        ws.join("scripts/integration.sh"),
        format!("#!/bin/sh\nbusybox httpd -f -p 127.0.0.1:{port} -h . & p=$!\nsleep 0.3\nkill $p\nwait $p\nexit 0\n"),
    )
    .unwrap();
    std::fs::write(ws.join("bin/nginx"), "#!/bin/sh\nexit 0\n").unwrap();
    for f in ["scripts/integration.sh", "bin/nginx"] {
        std::fs::set_permissions(ws.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        r#"{"number": 7, "pull_request": {"number": 7, "head": {"sha": "0123456789abcdef0123456789abcdef01234567"}}, "repository": {"full_name": "owner/repo"}}"#,
    )
    .unwrap();
    // The fake runner: pre, the steps (each with its GITHUB_ACTION and its own output file),
    // then post with STATE_* from the state file. Hostile argv in the last step. (bash: dash
    // drops the inputs whose names hold a dash from the environment of what it runs.)
    let runner = dir.join("runner.sh");
    std::fs::write(
        &runner,
        format!(
            r#"#!/bin/sh
set -u
cd "$GITHUB_WORKSPACE"
GITHUB_ACTION=__org_webserver-exec-guard GITHUB_OUTPUT={d}/out-pre node {dist}/pre.js > {d}/pre.out 2>&1 || exit 90
GITHUB_ACTION=__org_webserver-exec-guard node {dist}/main.js > {d}/main.out 2>&1
GITHUB_ACTION=__run make -v > /dev/null 2>&1
GITHUB_ACTION=integration ./scripts/integration.sh > /dev/null 2>&1
GITHUB_ACTION=hostile ./bin/nginx '%0A::error::forged' "$(printf 'x\n::add-mask::secret')" '[link](http://evil.example)' '@admin' '<img src=x>'
while IFS='=' read -r k v; do export "STATE_$k=$v"; done < "$GITHUB_STATE"
GITHUB_ACTION=__org_webserver-exec-guard GITHUB_OUTPUT={d}/out-post node {dist}/post.js > {d}/post.out 2> {d}/post.err
echo $? > {d}/post.code
"#,
            d = dir.display(),
            dist = repo().join("dist").display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    // Killed, and the test failed, when the fake runner does not finish within 120 s.
    common::command("bash", [&runner])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &dir)
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("RUNNER_TEMP", dir.join("temp"))
        .env("GITHUB_WORKSPACE", &ws)
        .env("GITHUB_STATE", dir.join("state.env"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("GITHUB_ENV", dir.join("env"))
        .env("GITHUB_REPOSITORY", "owner/repo")
        .env("GITHUB_SHA", COMMIT)
        .env(
            "GITHUB_WORKFLOW_REF",
            "owner/repo/.github/workflows/ci.yml@refs/pull/7/merge",
        )
        .env("GITHUB_JOB", "build")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_API_URL", format!("http://127.0.0.1:{}", mock.port))
        // Inputs reach every phase, as the runner passes them (names with a dash: a shell does
        // not pass them on, so they are set here, for the whole fake runner).
        .env("INPUT_GITHUB-TOKEN", TOKEN)
        .env("INPUT_CHECK-RUN", "true")
        .env("INPUT_MODE", mode)
        .env("INPUT_COMMENT", "true")
        .env("INPUT_SARIF", "results.sarif")
        .env("INPUT_PTRACE", "true")
        .env("INPUT_REQUIRE", "true")
        .env("WEBSERVER_EXEC_GUARD_BIN", GUARD)
        .env("GUARD_STATE_DIR", &state)
        .bound(Duration::from_secs(120))
        .run();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(
        read("pre.out")
            .lines()
            .filter(|l| l.starts_with("::"))
            .count(),
        0,
        "pre: {}",
        read("pre.out")
    );
    Job {
        code: read("post.code").trim().parse().ok(),
        post_stdout: read("post.out"),
        summary: read("summary.md"),
        outputs: read("out-post"),
        dir,
    }
}

fn no_forged_commands(stdout: &str) {
    for line in stdout.lines() {
        assert!(
            !line.starts_with("::error::forged"),
            "a forged command: {line}"
        );
        assert!(
            !line.starts_with("::add-mask::"),
            "a forged command: {line}"
        );
    }
}

#[test]
fn fail_mode_annotates_summarises_comments_and_fails() {
    let _l = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mock = Mock::start();
    let j = job("fail", "fail", &mock);
    let err = std::fs::read_to_string(j.dir.join("post.err")).unwrap_or_default();
    assert_eq!(
        j.code,
        Some(1),
        "post fails the job in fail mode\nstdout:\n{}\nstderr:\n{err}",
        j.post_stdout
    );
    // One error annotation per distinct (recipe, executable, step), pointing at the step.
    let errors: Vec<&str> = j
        .post_stdout
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    assert_eq!(errors.len(), 2, "{}", j.post_stdout);
    assert!(
        errors.iter().any(|l| l.starts_with("::error file=.github/workflows/ci.yml,line=10,title=webserver_exec (high)%3A busybox::")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("line=12,") && l.contains("%0A")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|l| l.contains("Recommended actions (CI/CD)")),
        "{errors:#?}"
    );
    assert!(
        j.post_stdout
            .contains("::error::webserver-exec-guard: 2 failing findings"),
        "{}",
        j.post_stdout
    );
    no_forged_commands(&j.post_stdout);
    // The job summary.
    assert!(j.summary.contains("2 failing findings"), "{}", j.summary);
    assert!(j.summary.contains("busybox httpd \\-f"), "{}", j.summary);
    assert!(
        j.summary.contains("Recommended actions for CI/CD"),
        "{}",
        j.summary
    );
    assert!(
        j.summary
            .contains("<details><summary>Recommended actions for staging"),
        "{}",
        j.summary
    );
    assert!(
        !j.summary.contains("[link](http"),
        "no live link from argv: {}",
        j.summary
    );
    assert!(!j.summary.contains("<img"), "no HTML from argv");
    // Outputs, the report and SARIF.
    assert!(j.outputs.contains("findings=2\n"), "{}", j.outputs);
    let report_line = j
        .outputs
        .lines()
        .find_map(|l| l.strip_prefix("report="))
        .expect("report output");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_line).unwrap()).unwrap();
    assert_eq!(report["verdict"], "fail");
    let sarif = j.dir.join("workspace/results.sarif");
    assert!(sarif.is_file(), "the sarif input is honoured");
    // The pull request: one sticky comment and a check run, valid per the OpenAPI description.
    let state = mock.state();
    let comments = state["comments"]["owner/repo#7"].as_array().unwrap();
    let sticky: Vec<_> = comments
        .iter()
        .filter(|c| {
            c["body"]
                .as_str()
                .is_some_and(|b| b.contains("webserver-exec-guard:sticky"))
        })
        .collect();
    assert_eq!(sticky.len(), 1, "{state:#}");
    assert_eq!(
        state["invalid"].as_array().map(|a| a.len()),
        Some(0),
        "{state:#}"
    );
    assert_eq!(
        state["check_runs"].as_array().map(|a| a.len()),
        Some(1),
        "{state:#}"
    );
    let _ = std::fs::remove_dir_all(&j.dir);
}

#[test]
fn warn_mode_reports_without_failing() {
    let _l = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mock = Mock::start();
    let j = job("warn", "warn", &mock);
    assert_eq!(j.code, Some(0), "{}", j.post_stdout);
    let warnings = j
        .post_stdout
        .lines()
        .filter(|l| l.starts_with("::warning file="))
        .count();
    assert_eq!(warnings, 2, "{}", j.post_stdout);
    assert!(
        !j.post_stdout.lines().any(|l| l.starts_with("::error")),
        "{}",
        j.post_stdout
    );
    no_forged_commands(&j.post_stdout);
    assert!(j.summary.contains("warn mode"), "{}", j.summary);
    let _ = std::fs::remove_dir_all(&j.dir);
}

#[test]
fn pre_warns_once_and_goes_on_unguarded_where_it_cannot_run() {
    let _l = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = common::tempdir("action-unguarded");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let pre = |os: &str, require: &str| -> (Option<i32>, String, String) {
        for f in ["state.env", "summary.md"] {
            std::fs::write(dir.join(f), "").unwrap();
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        // An ordinary user without sudo rights stands for a runner where root is out of reach.
        let o = common::command(
            "setpriv",
            [
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                GUARD,
                "action",
                "pre",
            ],
        )
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RUNNER_OS", os)
        .env("GITHUB_STATE", dir.join("state.env"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("INPUT_REQUIRE", require)
        .env("GUARD_STATE_DIR", dir.join("state"))
        .run();
        (
            o.code,
            o.stdout,
            std::fs::read_to_string(dir.join("summary.md")).unwrap(),
        )
    };
    let (code, out, summary) = pre("Linux", "false");
    assert_eq!(code, Some(0), "{out}");
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("::warning::"))
        .collect();
    assert_eq!(warnings.len(), 1, "once: {out}");
    assert!(
        warnings[0].contains("sudo") && warnings[0].contains("the job continues unguarded"),
        "{out}"
    );
    assert!(summary.contains("is not guarding this job"), "{summary}");
    let state = std::fs::read_to_string(dir.join("state.env")).unwrap();
    // Every key post reads is saved (a key pre did not save could be set through $GITHUB_ENV).
    assert!(state.starts_with("started=false\n"), "{state}");
    for key in [
        "channel",
        "watcher",
        "watcher_starttime",
        "guard",
        "require",
    ] {
        assert!(state.contains(&format!("\n{key}=\n")), "{key}: {state}");
    }

    let (code, out, _) = pre("Linux", "true");
    assert_eq!(code, Some(1), "require: true fails the job: {out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error::webserver-exec-guard:")),
        "{out}"
    );

    let (code, out, summary) = pre("Windows", "false");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Linux runners only (this runner is Windows)"),
        "{out}"
    );
    assert!(summary.contains("Linux runners only"), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
