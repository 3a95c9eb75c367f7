//! The Action attacked from inside the job it guards (issue H), on a runner stand-in
//! (tests/standin) that runs the job the way a hosted runner does: as an unprivileged user with
//! passwordless sudo, the action and the runner's `node` owned by that user, `$GITHUB_ENV` and
//! `$GITHUB_PATH` applied as the runner applies them. The tests here are the baseline the
//! attacks are measured against — a clean job passes and is watched, a job that runs nginx
//! fails, NODE_OPTIONS in $GITHUB_ENV is refused — and tests of the stand-in itself, which the
//! attacks rely on. Jobs that use the guard take turns (the stand-in serialises them): one host,
//! one watcher.

mod common;
mod standin;

use std::time::{Duration, Instant};

use standin::{Conclusion, Outcome, Phase, Standin, GUARD_ID};

#[test]
fn a_clean_job_succeeds_and_the_post_says_it_was_watched() {
    let test = "a_clean_job_succeeds_and_the_post_says_it_was_watched";
    let Some(s) = Standin::new(test) else { return };
    if !common::need_program(test, "make", "make") {
        return;
    }
    let job = s
        .job()
        .uses_guard(GUARD_ID)
        .run_step("__run", "true")
        .run_step("__run_2", "make --version")
        .run();
    assert!(job.success(), "{job}");
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
    // The pre step found the worker (node's parent) and attached to it.
    let watching = format!(
        "watching every exec of this job (and following the runner's worker, pid {}, with ptrace)",
        job.worker_pid
    );
    assert!(job.pre().log.contains(&watching), "{job}");
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
    let Some(s) = Standin::new(test) else { return };
    if !common::need_program(test, "nginx", "nginx-light") {
        return;
    }
    let job = s
        .job()
        .uses_guard(GUARD_ID)
        .run_step("serve", "nginx -v")
        .run();
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
