//! The Action attacked from inside the job it guards (issue H), on a runner stand-in
//! (tests/standin) that runs the job the way a hosted runner does: as an unprivileged user with
//! passwordless sudo, the action and the runner's `node` owned by that user, `$GITHUB_ENV` and
//! `$GITHUB_PATH` applied as the runner applies them. First the baseline the attacks are
//! measured against — a clean job passes and is watched, a job that runs nginx fails,
//! NODE_OPTIONS in $GITHUB_ENV is refused — and tests of the stand-in itself, then the attacks:
//! each must leave the job failed, saying what happened, or be refused outright. Jobs take turns
//! (the stand-in serialises them): one host, one watcher, one runner user whose sudo a job with
//! `disable-sudo` takes away.

mod common;
mod standin;

use std::time::{Duration, Instant};

use common::mock_github::{MockGitHub, TOKEN};
use standin::{Conclusion, JobResult, Outcome, Phase, Standin, GUARD_ID};

/// The job's commit (`GITHUB_SHA`), whose files the API mock serves.
const COMMIT: &str = "3dca65fa3e8d4b3da3f3d056c59aee1c50f41390";

/// The GitHub API, serving the job's commit with no file in it.
fn api() -> MockGitHub {
    let files = common::tempdir("tamper-commit");
    MockGitHub::start(&["--files", files.to_str().unwrap(), "--commit", COMMIT])
}

/// A job whose first step is the guard, with the API of `mock`.
fn guarded<'a>(s: &'a Standin, mock: &MockGitHub) -> standin::Job<'a> {
    s.job()
        .github("api_url", &mock.api_url())
        .github("sha", COMMIT)
        .github("token", TOKEN)
        .uses_guard(GUARD_ID)
}

/// A stand-in for a test that runs nginx (Debian's nginx-light).
fn with_nginx(test: &str) -> Option<Standin> {
    let s = Standin::new(test)?;
    common::need_program(test, "nginx", "nginx-light").then_some(s)
}

/// A guarded job that runs `nginx -v`, then `attack`: a step that tries to make it pass anyway.
fn attacked_after_nginx(s: &Standin, attack: &str) -> JobResult {
    let mock = api();
    guarded(s, &mock)
        .run_step("serve", "nginx -v")
        .run_step("attack", attack)
        .run()
}

/// The job failed in the guard's post step, whose log says `said`.
fn caught(job: &JobResult, said: &str) {
    assert_eq!(job.conclusion, Conclusion::Failure, "{job}");
    assert_eq!(job.post().outcome, Outcome::Failure, "{job}");
    assert!(
        job.post().log.contains(said),
        "post log lacks {said:?}\n{job}"
    );
}

#[test]
fn a_clean_job_succeeds_and_the_post_says_it_was_watched() {
    let test = "a_clean_job_succeeds_and_the_post_says_it_was_watched";
    let Some(s) = Standin::new(test) else { return };
    if !common::need_program(test, "make", "make") {
        return;
    }
    let mock = api();
    let job = guarded(&s, &mock)
        .run_step("__run", "true")
        .run_step("__run_2", "make --version")
        .run();
    assert!(job.success(), "{job}");
    // The default allowlist was looked up in the job's commit (it has none): no warning.
    assert!(!job.pre().log.contains("::warning::"), "{job}");
    // The job, the action and the runner's node are the runner user's.
    for path in [s.node(), s.action_dir().join("dist/post.js"), s.workspace()] {
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap());
        assert_eq!(owner, s.user().uid, "{}", path.display());
    }
    assert_eq!(job.uid, s.user().uid);
    let expected = [
        (Phase::Pre, GUARD_ID),
        (Phase::Main, GUARD_ID),
        (Phase::Main, "__run"),
        (Phase::Main, "__run_2"),
        (Phase::Post, GUARD_ID),
    ];
    let ran: Vec<(Phase, &str)> = job.steps.iter().map(|s| (s.phase, s.id.as_str())).collect();
    assert_eq!(ran, expected, "{job}");
    // The pre step found the worker (node's parent) and follows it up to each step's exec.
    assert!(
        job.pre()
            .log
            .contains("the runner's worker is followed up to each step's first exec"),
        "{job}"
    );
    let summary = job.post().summary.as_deref().unwrap_or_default();
    assert!(
        summary.contains("webserver-exec-guard: no web server was started"),
        "{job}\nsummary: {summary}"
    );
    assert_eq!(
        job.post().outputs.get("findings").map(String::as_str),
        Some("0")
    );
    assert!(!job.watcher_left_running, "the post stops the watcher");
    assert!(job.leftovers.is_empty(), "{:?}", job.leftovers);
}

#[test]
fn a_job_that_runs_nginx_fails_in_the_guards_post() {
    let test = "a_job_that_runs_nginx_fails_in_the_guards_post";
    let Some(s) = with_nginx(test) else { return };
    let mock = api();
    let job = guarded(&s, &mock).run_step("serve", "nginx -v").run();
    assert_eq!(job.conclusion, Conclusion::Failure, "{job}");
    assert_eq!(job.step("serve").outcome, Outcome::Success, "{job}");
    let post = job.post();
    assert_eq!(post.outcome, Outcome::Failure, "{job}");
    assert!(post.log.contains("webserver_exec"), "{job}");
    assert!(
        post.log
            .contains("::error::webserver-exec-guard: 1 failing finding"),
        "{job}"
    );
}

#[test]
fn node_options_in_github_env_is_refused_and_the_job_goes_on() {
    let test = "node_options_in_github_env_is_refused_and_the_job_goes_on";
    let Some(s) = Standin::new(test) else { return };
    let job = s
        .job()
        .uses_guard(GUARD_ID)
        .run_step(
            "poison",
            "echo 'NODE_OPTIONS=--require /tmp/x' >> \"$GITHUB_ENV\"\n\
             echo 'node_options=--require /tmp/x' >> \"$GITHUB_ENV\"\n",
        )
        .run_step(
            "after",
            "echo \"NODE_OPTIONS=${NODE_OPTIONS-unset} node_options=${node_options-unset}\"",
        )
        .run();
    assert!(job.success(), "{job}");
    // Refused as the runner refuses it, case-insensitively, in the log of the step that wrote it,
    // without failing that step.
    let poison = job.step("poison");
    let refusal =
        "##[error]Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.\n";
    assert_eq!(poison.log.matches(refusal).count(), 2, "{job}");
    assert_eq!(poison.outcome, Outcome::Success, "{job}");
    assert!(
        job.step("after")
            .log
            .contains("NODE_OPTIONS=unset node_options=unset"),
        "{job}"
    );
    assert_eq!(job.post().outcome, Outcome::Success, "{job}");
}

#[test]
fn github_env_and_github_path_reach_later_steps_as_the_runner_applies_them() {
    let test = "github_env_and_github_path_reach_later_steps_as_the_runner_applies_them";
    let Some(s) = Standin::new(test) else { return };
    let set = r#"
for d in one two; do
  mkdir -p "$RUNNER_TEMP/$d"
  printf '#!/bin/sh\necho hello from %s\n' "$d" > "$RUNNER_TEMP/$d/hello"
  chmod +x "$RUNNER_TEMP/$d/hello"
  echo "$RUNNER_TEMP/$d" >> "$GITHUB_PATH"
done
echo 'GREETING=hello world' >> "$GITHUB_ENV"
printf 'LETTER<<EOF_1\nline one\nline two\nEOF_1\n' >> "$GITHUB_ENV"
echo 'GITHUB_SHA=forged' >> "$GITHUB_ENV"
echo 'SHADOWED=from GITHUB_ENV' >> "$GITHUB_ENV"
"#;
    let show = r#"
echo "GREETING=$GREETING"
echo "LETTER=$LETTER" | tr '\n' '|'; echo
echo "HELLO=$(hello)"
echo "PATH=$PATH"
echo "GITHUB_SHA=$GITHUB_SHA"
echo "SHADOWED=$SHADOWED"
echo "PARENT=$PPID"
echo "IDS=$(id -u) $(id -G)"
echo "SUDO=$(sudo -n id -u)"
"#;
    let job = s
        .job()
        .env("SHADOWED", "from the job's env")
        .run_step("set", set)
        .run_step("with_step_env", show)
        .step_env("SHADOWED", "from the step's env")
        .run_step("without", show)
        .run_step("bash", "true")
        .shell("bash")
        .run();
    assert!(job.success(), "{job}");
    // The runner's shells: `bash -e` without `shell:`, more options with `shell: bash`.
    let options = |id: &str| job.step(id).argv[1..job.step(id).argv.len() - 1].join(" ");
    assert_eq!(options("without"), "-e", "{job}");
    assert_eq!(
        options("bash"),
        "--noprofile --norc -e -o pipefail",
        "{job}"
    );
    let temp = s.temp().display().to_string();
    let user = s.user();
    for (id, shadowed) in [
        ("with_step_env", "from the step's env"),
        ("without", "from GITHUB_ENV"),
    ] {
        let log = &job.step(id).log;
        for line in [
            "GREETING=hello world".to_string(),
            "LETTER=line one|line two|".into(),
            // The latest GITHUB_PATH entry comes first.
            "HELLO=hello from two".into(),
            format!("PATH={temp}/two:{temp}/one:{}", standin::RUNNER_PATH),
            // The github context wins over GITHUB_ENV.
            "GITHUB_SHA=0123456789abcdef0123456789abcdef01234567".into(),
            // The step's env wins over GITHUB_ENV, which wins over the job's.
            format!("SHADOWED={shadowed}"),
            // Each step is a child of the worker, run as the runner user with its group only,
            // with passwordless sudo.
            format!("PARENT={}", job.worker_pid),
            format!("IDS={} {}", user.uid, user.gid),
            "SUDO=0".into(),
        ] {
            assert!(
                log.lines().any(|l| l == line),
                "{id}: no line {line:?}\n{job}"
            );
        }
    }
}

#[test]
fn a_failed_step_skips_the_later_ones_but_not_the_guards_post() {
    let test = "a_failed_step_skips_the_later_ones_but_not_the_guards_post";
    let Some(s) = Standin::new(test) else { return };
    let job = s
        .job()
        .uses_guard(GUARD_ID)
        .run_step("fail", "exit 3")
        .run_step("never", "echo ran")
        .run();
    assert_eq!(job.conclusion, Conclusion::Failure, "{job}");
    let fail = job.step("fail");
    assert_eq!(
        (fail.outcome, fail.exit_code),
        (Outcome::Failure, Some(3)),
        "{job}"
    );
    assert!(
        fail.log
            .contains("##[error]Process completed with exit code 3."),
        "{job}"
    );
    assert_eq!(job.step("never").outcome, Outcome::Skipped, "{job}");
    assert_eq!(job.post().outcome, Outcome::Success, "{job}");
}

#[test]
fn a_step_beyond_its_bound_is_killed_with_what_it_started() {
    let test = "a_step_beyond_its_bound_is_killed_with_what_it_started";
    let Some(s) = Standin::new(test) else { return };
    let start = Instant::now();
    let job = s
        .job()
        .bound(Duration::from_secs(1))
        .run_step("hang", "sleep 60 & sleep 60")
        .run_step("never", "true")
        .run();
    assert!(start.elapsed() < Duration::from_secs(30), "{job}");
    let hang = job.step("hang");
    assert!(hang.timed_out, "{job}");
    assert_eq!(hang.outcome, Outcome::Failure, "{job}");
    assert_eq!(job.step("never").outcome, Outcome::Skipped, "{job}");
    assert!(job.leftovers.is_empty(), "{:?}", job.leftovers);
}

#[test]
fn a_malformed_github_env_fails_its_step_after_applying_what_came_before() {
    let test = "a_malformed_github_env_fails_its_step_after_applying_what_came_before";
    let Some(s) = Standin::new(test) else { return };
    let job = s
        .job()
        .run_step(
            "write",
            "printf 'BEFORE=applied\nOPEN<<EOF\nnever closed\n' >> \"$GITHUB_ENV\"",
        )
        .run_step("skipped", "true")
        .run_step("always", "echo \"BEFORE=${BEFORE-unset}\"")
        .step_if("always()")
        .run();
    assert_eq!(job.conclusion, Conclusion::Failure, "{job}");
    let write = job.step("write");
    assert_eq!(
        (write.outcome, write.exit_code),
        (Outcome::Failure, Some(0)),
        "{job}"
    );
    assert!(
        write.log.contains(
            "##[error]Unable to process file command 'env' successfully.\n\
             ##[error]Invalid value. Matching delimiter not found 'EOF'\n"
        ),
        "{job}"
    );
    // What came before the error was applied: a step that runs after the failure sees it.
    assert_eq!(job.step("skipped").outcome, Outcome::Skipped, "{job}");
    assert!(job.step("always").log.contains("BEFORE=applied"), "{job}");
}

#[test]
fn a_step_that_leaves_its_output_open_is_waited_for_5_s_and_its_orphan_killed() {
    let test = "a_step_that_leaves_its_output_open_is_waited_for_5_s_and_its_orphan_killed";
    let Some(s) = Standin::new(test) else { return };
    let start = Instant::now();
    let job = s
        .job()
        .run_step("daemon", "sleep 60 &\necho started")
        .run_step("next", "true")
        .run();
    let elapsed = start.elapsed();
    assert!(job.success(), "{job}");
    let daemon = job.step("daemon");
    assert!(daemon.output_held_open, "{job}");
    assert!(daemon.log.contains("started"), "{job}");
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    // The runner's end-of-job clean-up: the sleep carries the job's RUNNER_TRACKING_ID.
    assert_eq!(
        job.orphans
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["sleep"],
        "{job}"
    );
    assert!(job.leftovers.is_empty(), "{:?}", job.leftovers);
}

// ---------------------------------------------------------------------------------------------
// Attacks: a step after `nginx -v` tries to make the job pass anyway (issue H). Each must leave
// the job failed, saying what happened.
// ---------------------------------------------------------------------------------------------

/// The watcher of the job, for `sudo pkill -f`: `guard start --message --job - …` (pre ran it
/// through sudo).
const WATCHER: &str = "'[s]tart --message --job'";

#[test]
fn overrides_through_github_env_and_github_path_do_not_reach_the_post_step() {
    let test = "overrides_through_github_env_and_github_path_do_not_reach_the_post_step";
    let Some(s) = with_nginx(test) else { return };
    // A fake `sudo`, `guard` and `node` on $GITHUB_PATH, and the guard's binary, state
    // directory, state keys and mode set through $GITHUB_ENV.
    let attack = r#"
mkdir -p "$RUNNER_TEMP/fake"
for tool in sudo guard node; do printf '#!/bin/sh\nexit 0\n' > "$RUNNER_TEMP/fake/$tool"; chmod +x "$RUNNER_TEMP/fake/$tool"; done
echo "$RUNNER_TEMP/fake" >> "$GITHUB_PATH"
mkdir -p "$RUNNER_TEMP/state"
cat >> "$GITHUB_ENV" <<VARS
WEBSERVER_EXEC_GUARD_BIN=/bin/true
GUARD_STATE_DIR=$RUNNER_TEMP/state
STATE_guard=/bin/true
STATE_started=false
STATE_channel=nothing-here
INPUT_MODE=warn
VARS
"#;
    let job = attacked_after_nginx(&s, attack);
    caught(&job, "webserver_exec");
    assert!(
        job.post().log.contains("-bin/guard (sealed) action post"),
        "{job}"
    );
    assert!(!job.post().log.contains("verdict_tampered"), "{job}");
}

#[test]
fn the_action_and_node_cannot_be_rewritten_by_the_runner_user() {
    let test = "the_action_and_node_cannot_be_rewritten_by_the_runner_user";
    let Some(s) = with_nginx(test) else { return };
    let dist = s.action_dir().join("dist");
    let node = s.node();
    let attack = format!(
        r#"
try() {{ if "$@" 2>&1; then echo "ALLOWED: $*"; else echo "refused: $*"; fi; }}
try sh -c 'echo "process.exit(0)" > {dist}/post.js'
try sh -c 'echo "process.exit(0)" > {dist}/lib.js'
try cp /bin/true {dist}/bin/guard-linux-x64
try sh -c 'echo "process.exit(0)" > {dist}/evil.js'
try cp /bin/true {node}
try mv {node} {node}.old
try mv {dist} {dist}.old
"#,
        dist = dist.display(),
        node = node.display()
    );
    let job = attacked_after_nginx(&s, &attack);
    let log = &job.step("attack").log;
    assert!(!log.contains("ALLOWED"), "{job}");
    assert_eq!(log.matches("refused:").count(), 7, "{job}");
    assert!(log.contains("Read-only file system"), "{job}");
    caught(&job, "webserver_exec");
    assert!(!job.post().log.contains("verdict_tampered"), "{job}");
    // The read-only bind mounts are gone with the watcher: the runner can clean up.
    let probe = dist.join("post.js.probe");
    std::fs::write(&probe, "").expect("dist/ is writable again after the job");
    let _ = std::fs::remove_file(&probe);
}

#[test]
fn a_script_rewritten_with_sudo_is_stopped_at_the_door() {
    let test = "a_script_rewritten_with_sudo_is_stopped_at_the_door";
    let Some(s) = with_nginx(test) else { return };
    let dist = s.action_dir().join("dist");
    let attack = format!(
        "sudo -n umount {dist}\necho 'process.exit(0)' > {dist}/post.js\n",
        dist = dist.display()
    );
    let job = attacked_after_nginx(&s, &attack);
    caught(&job, "verdict_tampered");
    assert!(
        job.post().log.contains("post.js was modified after pre"),
        "{job}"
    );
    assert_eq!(job.post().signal, Some(9), "stopped before it ran\n{job}");
}

#[test]
fn node_replaced_with_sudo_is_stopped_at_the_door() {
    let test = "node_replaced_with_sudo_is_stopped_at_the_door";
    let Some(s) = Standin::new(test) else { return };
    let node = s.node();
    let attack = format!(
        "sudo -n umount {node}\nrm -f {node}\nprintf '#!/bin/sh\\nexit 0\\n' > {node}\nchmod +x {node}\n",
        node = node.display()
    );
    let mock = api();
    let job = guarded(&s, &mock)
        .run_step("serve", "true")
        .run_step("attack", &attack)
        .run();
    caught(&job, "verdict_tampered");
    assert!(
        job.post()
            .log
            .contains("is not the runner's node that ran pre"),
        "{job}"
    );
}

#[test]
fn an_ld_preload_library_set_through_github_env_is_refused() {
    let test = "an_ld_preload_library_set_through_github_env_is_refused";
    let Some(s) = Standin::new(test) else { return };
    if !common::need_program(test, "gcc", "gcc")
        || !common::need_program(test, "nginx", "nginx-light")
    {
        return;
    }
    // A library whose constructor ends every process that loads it with status 0.
    let src = s.write(
        s.temp().join("exit0.c"),
        "#include <unistd.h>\n__attribute__((constructor)) static void f(void) { _exit(0); }\n",
    );
    let lib = s.temp().join("exit0.so");
    let built = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success());
    let attack = format!("echo 'LD_PRELOAD={}' >> \"$GITHUB_ENV\"\n", lib.display());
    let job = attacked_after_nginx(&s, &attack);
    caught(&job, "verdict_tampered");
    assert!(
        job.post().log.contains("LD_PRELOAD was added after pre"),
        "{job}"
    );
}

#[test]
fn the_watcher_killed_or_frozen_with_sudo_is_loud() {
    let test = "the_watcher_killed_or_frozen_with_sudo_is_loud";
    let Some(s) = with_nginx(test) else { return };
    let mock = api();
    let killed = guarded(&s, &mock)
        .run_step("serve", "nginx -v")
        .run_step("attack", &format!("sudo -n pkill -KILL -f {WATCHER}\n"))
        .run();
    caught(
        &killed,
        "verdict_tampered: the watcher's channel does not answer",
    );
    // What the killed watcher took is given back by `guard stop` (the stand-in runs it after
    // the job, as a runner's administrator would).
    let probe = s.action_dir().join("dist/probe");
    std::fs::write(&probe, "").expect("dist/ writable again after `guard stop`");
    let _ = std::fs::remove_file(&probe);

    // Frozen while nginx runs, then let go before the post step; in warn mode, which reports
    // the policy's findings without failing, but not a build that switched the guard off.
    let frozen = guarded(&s, &mock)
        .input("mode", "warn")
        .run_step(
            "attack",
            &format!(
                "sudo -n pkill -STOP -f {WATCHER}\nnginx -v\nsleep 0.3\nsudo -n pkill -CONT -f {WATCHER}\n"
            ),
        )
        .run();
    caught(&frozen, "verdict_tampered");
    assert!(
        frozen
            .post()
            .log
            .contains("stopped (SIGSTOP) and continued"),
        "{frozen}"
    );
    assert!(
        frozen
            .post()
            .log
            .contains("the job fails whatever the mode"),
        "{frozen}"
    );
}

#[test]
fn a_process_the_door_did_not_verify_gets_no_verdict() {
    let test = "a_process_the_door_did_not_verify_gets_no_verdict";
    let Some(s) = Standin::new(test) else { return };
    // The channel's name is public (/proc/net/unix); asking for the verdict on it is refused,
    // and the real post step still gets it.
    let ask = r#"/usr/bin/python3 - <<'PY'
import socket
name = next(l.split()[-1] for l in open('/proc/net/unix') if 'webserver-exec-guard/' in l)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect('\0' + name[1:])
s.sendall(b'{"v":1,"type":"verdict"}\n')
print('ANSWER', s.recv(4096).decode())
PY
"#;
    let mock = api();
    let job = guarded(&s, &mock).run_step("ask", ask).run();
    let log = &job.step("ask").log;
    assert!(log.contains("ANSWER {\"v\":1,\"type\":\"error\""), "{job}");
    assert!(log.contains("is a step the door verified"), "{job}");
    assert!(job.success(), "{job}");
}

#[test]
fn with_disable_sudo_every_sudo_attack_fails_at_sudo_and_the_verdict_is_honest() {
    let test = "with_disable_sudo_every_sudo_attack_fails_at_sudo_and_the_verdict_is_honest";
    let Some(s) = with_nginx(test) else { return };
    let dist = s.action_dir().join("dist");
    let attack = format!(
        r#"
for cmd in "pkill -KILL -f {WATCHER}" "pkill -STOP -f {WATCHER}" "umount {dist}" "-g root true" "true"; do
  if eval sudo -n $cmd; then echo "ALLOWED: sudo $cmd"; else echo "refused: sudo $cmd"; fi
done
"#,
        dist = dist.display()
    );
    let mock = api();
    let job = guarded(&s, &mock)
        .input("disable-sudo", "true")
        .run_step("serve", "nginx -v")
        .run_step("attack", &attack)
        .run();
    let log = &job.step("attack").log;
    assert!(!log.contains("ALLOWED"), "{job}");
    assert_eq!(log.matches("refused:").count(), 5, "{job}");
    assert!(
        log.contains("is not allowed to execute"),
        "sudo's own message\n{job}"
    );
    caught(&job, "webserver_exec");
    assert!(!job.post().log.contains("verdict_tampered"), "{job}");
    // Rights are back after the post step.
    let sudo = std::process::Command::new("runuser")
        .args(["-u", standin::USER, "--", "sudo", "-n", "true"])
        .status()
        .unwrap();
    assert!(sudo.success(), "sudo is given back at the end of the job");
}

#[test]
fn disable_sudo_and_containers_makes_the_engines_socket_roots_until_the_end() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let test = "disable_sudo_and_containers_makes_the_engines_socket_roots_until_the_end";
    let Some(s) = Standin::new(test) else { return };
    // A real socket standing for the Docker daemon's: the runner user's group may connect.
    let dir = common::tempdir("tamper-engine");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("engine.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(s.user().gid)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let connect = format!(
        "/usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{}'); print('CONNECTED')\" || echo 'refused: connect'\n",
        path.display()
    );
    let mock = api();
    let job = guarded(&s, &mock)
        .env(
            "WEBSERVER_EXEC_GUARD_CONTAINER_SOCKETS",
            path.to_str().unwrap(),
        )
        .input("disable-sudo-and-containers", "true")
        .run_step("connect", &connect)
        .run_step("sudo", "sudo -n true || echo 'refused: sudo'")
        .run();
    assert!(job.success(), "{job}");
    let connect = &job.step("connect").log;
    assert!(connect.contains("refused: connect"), "{job}");
    assert!(connect.contains("Permission denied"), "{job}");
    assert!(job.step("sudo").log.contains("refused: sudo"), "{job}");
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o777),
        (0, s.user().gid, 0o660),
        "given back"
    );
    drop(listener);
}

#[test]
fn a_clean_job_that_sets_ld_library_path_passes() {
    let test = "a_clean_job_that_sets_ld_library_path_passes";
    let Some(s) = Standin::new(test) else { return };
    // In the workflow's env (pre has it too), and added by a step for its later steps as setup
    // actions do (the door removes it from the guard's own steps instead of refusing them).
    let mock = api();
    let job = guarded(&s, &mock)
        .env("LD_LIBRARY_PATH", "/opt/workflow/lib")
        .run_step(
            "setup",
            "mkdir -p \"$RUNNER_TEMP/py/lib\"\necho \"LD_LIBRARY_PATH=$RUNNER_TEMP/py/lib:$LD_LIBRARY_PATH\" >> \"$GITHUB_ENV\"\n",
        )
        .run_step("use", "echo \"later: $LD_LIBRARY_PATH\"")
        .run();
    assert!(job.success(), "{job}");
    assert!(
        job.step("use").log.contains("/py/lib:/opt/workflow/lib"),
        "{job}"
    );
    let summary = job.post().summary.as_deref().unwrap_or_default();
    assert!(
        summary.contains("LD\\_LIBRARY\\_PATH was set by a step after pre"),
        "{job}\nsummary: {summary}"
    );
}

#[test]
fn the_allowlist_comes_from_the_workflow_or_the_jobs_commit_never_the_working_tree() {
    let test = "the_allowlist_comes_from_the_workflow_or_the_jobs_commit_never_the_working_tree";
    let Some(s) = with_nginx(test) else { return };
    let allow = "allow:\n  - recipe: webserver_exec\n    base: nginx\n    argv: ' -v$'\n    reason: the build prints nginx's version\n";
    // A step writes an allowlist that allows everything into the working tree: no effect.
    let plant = "mkdir -p .github\nprintf 'allow:\\n  - recipe: webserver_exec\\n    reason: x\\n' > .github/webserver-exec-guard.yml\n";
    let mock = api();
    let job = guarded(&s, &mock)
        .run_step("plant", plant)
        .run_step("serve", "nginx -v")
        .run();
    caught(&job, "webserver_exec");

    // Inline in the workflow (input `allowlist`).
    let job = guarded(&s, &mock)
        .input("allowlist", allow)
        .run_step("serve", "nginx -v")
        .run();
    assert!(job.success(), "{job}");
    assert!(
        job.post()
            .summary
            .as_deref()
            .unwrap_or_default()
            .contains("the build prints nginx"),
        "{job}"
    );

    // The file as it is in the job's commit (served by the API, checked against its blob id).
    let files = common::tempdir("tamper-commit-allow");
    std::fs::create_dir_all(files.join(".github")).unwrap();
    std::fs::write(files.join(".github/webserver-exec-guard.yml"), allow).unwrap();
    let mock = MockGitHub::start(&["--files", files.to_str().unwrap(), "--commit", COMMIT]);
    let job = guarded(&s, &mock).run_step("serve", "nginx -v").run();
    assert!(job.success(), "{job}");

    // Unreadable (the API refuses): the job says so and runs with no allowlist.
    let refusing = MockGitHub::start(&[
        "--files",
        files.to_str().unwrap(),
        "--commit",
        COMMIT,
        "--contents-status",
        "403",
    ]);
    let job = guarded(&s, &refusing).run_step("serve", "nginx -v").run();
    caught(&job, "webserver_exec");
    assert!(
        job.pre()
            .log
            .contains("could not be read as it is in the job's commit"),
        "{job}"
    );
    assert!(job.pre().log.contains("contents: read"), "{job}");
}

#[test]
fn the_sealed_guard_binary_replaced_with_sudo_is_stopped_before_it_runs() {
    let test = "the_sealed_guard_binary_replaced_with_sudo_is_stopped_before_it_runs";
    let Some(s) = with_nginx(test) else { return };
    // The post step runs the copy pre sealed in a root-owned directory; root can rewrite it.
    let mock = api();
    let job = guarded(&s, &mock)
        .run_step("serve", "nginx -v")
        .run_step(
            "attack",
            "sudo -n cp /bin/true \"${GUARD_STATE_DIR}-bin/guard\"\n",
        )
        .run();
    caught(&job, "verdict_tampered");
    assert!(
        job.post().log.contains("guard was modified after pre"),
        "{job}"
    );
}

#[test]
fn the_watchers_sealed_policy_edited_with_sudo_is_loud() {
    let test = "the_watchers_sealed_policy_edited_with_sudo_is_loud";
    let Some(s) = Standin::new(test) else { return };
    let allow =
        "allow:\n  - recipe: webserver_exec\n    base: nginx\n    reason: only the version\n";
    let mock = api();
    let job = guarded(&s, &mock)
        .input("allowlist", allow)
        .run_step(
            "attack",
            "sudo -n sh -c 'echo \"# edited\" >> \"$0/policy/allowlist.yml\"' \"$GUARD_STATE_DIR\"\n",
        )
        .run();
    caught(&job, "verdict_tampered");
    assert!(
        job.post()
            .log
            .contains("allowlist.yml was modified after pre"),
        "{job}"
    );
}

#[test]
fn recipes_in_the_repository_are_read_from_the_jobs_commit() {
    let test = "recipes_in_the_repository_are_read_from_the_jobs_commit";
    let Some(s) = Standin::new(test) else { return };
    let recipe = "- kind: printf_exec\n  name: printf_exec\n  version: 1.0\n  description: printf ran\n  breed: file_access\n  mechanism: execution\n  tactic: command_and_control\n  technique: non_application_layer_protocol\n  importance: high\n  file_actions: execve\n  bases:\n    - base: printf\n";
    let files = common::tempdir("tamper-commit-recipes");
    std::fs::create_dir_all(files.join("ci/recipes")).unwrap();
    std::fs::write(files.join("ci/recipes/printf.yaml"), recipe).unwrap();
    let mock = MockGitHub::start(&["--files", files.to_str().unwrap(), "--commit", COMMIT]);
    // The working tree has no such directory (no checkout): the commit's is used.
    let job = guarded(&s, &mock)
        .input("recipes", "ci/recipes")
        .run_step("print", "/usr/bin/printf 'hello\\n'")
        .run();
    caught(&job, "printf_exec");

    // A path the commit does not have: pre fails, naming it (the guard never runs blind).
    let job = guarded(&s, &mock)
        .input("recipes", "ci/missing.yaml")
        .run_step("print", "true")
        .run();
    assert_eq!(job.pre().outcome, Outcome::Failure, "{job}");
    assert!(
        job.pre()
            .log
            .contains("recipes \"ci/missing.yaml\": no such path in the job's commit"),
        "{job}"
    );
}

#[test]
fn a_process_in_the_killed_watchers_place_is_not_believed() {
    let test = "a_process_in_the_killed_watchers_place_is_not_believed";
    let Some(s) = with_nginx(test) else { return };
    // The watcher killed, and its channel's name taken by a process that answers "pass".
    let attack = format!(
        r#"name=$(grep -o 'webserver-exec-guard/[^ ]*' /proc/net/unix | head -1)
sudo -n pkill -KILL -f {WATCHER}
sleep 0.2
setsid /usr/bin/python3 - "$name" > /dev/null 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('\0' + sys.argv[1])
s.listen(1)
c, _ = s.accept()
c.recv(4096)
c.sendall(b'{{"v":1,"type":"accepted"}}\n')
PY
sleep 0.3
"#
    );
    let job = attacked_after_nginx(&s, &attack);
    caught(&job, "verdict_tampered");
    assert!(
        job.post().log.contains("not the watcher pre started"),
        "{job}"
    );
}

#[test]
fn a_step_that_uses_ptrace_itself_works_under_the_default_door() {
    let test = "a_step_that_uses_ptrace_itself_works_under_the_default_door";
    let Some(s) = Standin::new(test) else { return };
    if !common::need_program(test, "strace", "strace") {
        return;
    }
    // By default each step is let go at its first exec: strace (gdb, rr, LeakSanitizer) can
    // trace what the step runs. With `ptrace: true` every step is followed, and a process has
    // one tracer.
    let step = "strace -f -o /dev/null -e trace=execve /bin/true && echo TRACED";
    let mock = api();
    let job = guarded(&s, &mock).run_step("strace", step).run();
    assert!(job.success(), "{job}");
    assert!(job.step("strace").log.contains("TRACED"), "{job}");

    let job = guarded(&s, &mock)
        .input("ptrace", "true")
        .run_step("strace", step)
        .run();
    assert_eq!(job.step("strace").outcome, Outcome::Failure, "{job}");
    assert!(
        job.step("strace").log.contains("Operation not permitted"),
        "{job}"
    );
}
