//! Pull request feedback (src/github/api.rs, src/github/pr.rs) against a local stand-in for the
//! GitHub API, tests/js/mock_github.js, which validates every request body against GitHub's
//! official OpenAPI description (npm `@octokit/openapi`, installed by `npm ci --prefix tests/js`).
//! Also: reading the pull request from the Actions environment, and the request bodies' limits.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::mock_github::{assert_no_invalid_request, MockGitHub, TOKEN};
use guard::github::api::{publish, PrContext};
use guard::github::pr::{
    batches, check_run_create_body, check_run_update_body, comment_body, AnnotationLevel,
    CheckAnnotation, CheckRunOutput, Conclusion, COMMENT_MAX_CHARS, MARKER, SUMMARY_MAX_CHARS,
};
use serde_json::Value;

const HEAD_SHA: &str = "3dca65fa3e8d4b3da3f3d056c59aee1c50f41390";
const PR: u64 = 7;

impl MockGitHub {
    fn context(&self) -> PrContext {
        PrContext {
            api_url: self.api_url(),
            token: TOKEN.to_string(),
            owner: "octo-org".to_string(),
            repo: "hello.world".to_string(),
            pr_number: PR,
            head_sha: HEAD_SHA.to_string(),
        }
    }

    fn comments(&self) -> Vec<Value> {
        self.state()["comments"][format!("octo-org/hello.world#{PR}")]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn marker_comments(comments: &[Value]) -> Vec<&Value> {
    comments
        .iter()
        .filter(|c| c["body"].as_str().unwrap_or("").contains(MARKER))
        .collect()
}

fn annotation(i: usize) -> CheckAnnotation {
    CheckAnnotation {
        path: format!("ci/step-{i}.sh"),
        start_line: (i % 7) as u32 + 1,
        end_line: (i % 7) as u32 + 2,
        level: match i % 3 {
            0 => AnnotationLevel::Failure,
            1 => AnnotationLevel::Warning,
            _ => AnnotationLevel::Notice,
        },
        title: format!("webserver exec #{i}"),
        message: format!("nginx -g 'daemon off;' started by step {i}"),
    }
}

fn output_with(n: usize) -> CheckRunOutput {
    CheckRunOutput {
        title: format!("{n} findings"),
        summary: "## webserver-exec-guard\n\nfail".to_string(),
        annotations: (0..n).map(annotation).collect(),
    }
}

#[test]
fn sticky_comment_is_created_then_updated_in_place_never_duplicated() {
    // 235 unrelated comments and one by another user that carries our marker: 3 pages of 100.
    let mock = MockGitHub::start(&["--seed", "235", "--decoy-marker"]);
    let ctx = mock.context();

    let first = comment_body("## webserver-exec-guard\n\n**pass** — no web server started");
    let warnings = publish(&ctx, Some(&first), None);
    assert_eq!(warnings, Vec::<String>::new());
    let comments = mock.comments();
    assert_eq!(comments.len(), 237);
    let ours: Vec<_> = marker_comments(&comments)
        .into_iter()
        .filter(|c| c["user"]["login"] == "github-actions[bot]")
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0]["body"], first.as_str());
    let id = ours[0]["id"].clone();

    // The second run updates the same comment; a summary without the marker is wrapped.
    let second_summary = "## webserver-exec-guard\n\n**fail** — nginx started\n".repeat(3);
    let warnings = publish(&ctx, Some(&second_summary), None);
    assert_eq!(warnings, Vec::<String>::new());
    let comments = mock.comments();
    assert_eq!(comments.len(), 237, "a second comment was created");
    let ours: Vec<_> = marker_comments(&comments)
        .into_iter()
        .filter(|c| c["user"]["login"] == "github-actions[bot]")
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["id"], id);
    assert_eq!(ours[0]["body"], comment_body(&second_summary).as_str());

    // Nobody else's comment was touched, the decoy with the marker included.
    let others: Vec<_> = comments
        .iter()
        .filter(|c| c["user"]["login"] != "github-actions[bot]")
        .collect();
    assert_eq!(others.len(), 236);
    let decoy = others
        .iter()
        .find(|c| c["user"]["login"] == "mallory")
        .expect("decoy");
    assert_eq!(decoy["body"], format!("{MARKER}\nnot the guard's comment"));
    let unrelated = others
        .iter()
        .filter(|c| c["user"]["login"] == "octocat")
        .collect::<Vec<_>>();
    assert_eq!(unrelated.len(), 235);
    for (i, c) in unrelated.iter().enumerate() {
        assert_eq!(c["body"], format!("unrelated comment {}", i + 1));
        assert_eq!(c["updated_at"], "2026-01-01T00:00:00Z");
    }

    // Pagination went through all pages (our comment is on page 3), with pages of 100.
    let state = mock.state();
    assert_no_invalid_request(&state);
    let requests = state["requests"].as_array().unwrap();
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r["operation"] == "issues/list-comments")
        .map(|r| r["page"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, [1, 2, 3, 1, 2, 3], "{requests:#?}");
    assert!(requests
        .iter()
        .filter(|r| r["operation"] == "issues/list-comments")
        .all(|r| r["query"].as_str().unwrap().contains("per_page=100")));
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| r["method"] != "GET")
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        writes,
        [
            ("issues/create-comment", 201),
            ("issues/update-comment", 200)
        ]
    );
}

#[test]
fn personal_token_updates_its_own_comment_only() {
    // A personal token: GET /user says who we are; the decoy (by "mallory") is not ours.
    let mock = MockGitHub::start(&["--seed", "3", "--decoy-marker", "--login", "alice"]);
    let ctx = mock.context();
    assert_eq!(publish(&ctx, Some("one"), None), Vec::<String>::new());
    assert_eq!(publish(&ctx, Some("two"), None), Vec::<String>::new());
    let comments = mock.comments();
    let alice: Vec<_> = comments
        .iter()
        .filter(|c| c["user"]["login"] == "alice")
        .collect();
    assert_eq!(alice.len(), 1, "{comments:#?}");
    assert_eq!(alice[0]["body"], comment_body("two").as_str());
    assert_no_invalid_request(&mock.state());
}

#[test]
fn check_run_with_120_annotations_is_created_then_extended_in_batches_of_50() {
    let mock = MockGitHub::start(&["--seed", "0"]);
    let ctx = mock.context();
    let mut output = output_with(120);
    // Out-of-range values the body builder must make acceptable.
    output.summary = "x".repeat(SUMMARY_MAX_CHARS + 10_000);
    output.annotations[7].title = "t".repeat(300);
    output.annotations[8].start_line = 0;
    output.annotations[8].end_line = 0;

    let warnings = publish(&ctx, None, Some((&output, Conclusion::Failure)));
    assert_eq!(warnings, Vec::<String>::new());

    let state = mock.state();
    assert_no_invalid_request(&state);
    let runs = state["check_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(run["name"], "webserver-exec-guard");
    assert_eq!(run["head_sha"], HEAD_SHA);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(run["output"]["title"], "120 findings");
    let per_request: Vec<_> = run["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap(),
                r["annotations"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_request, [("POST", 50), ("PATCH", 50), ("PATCH", 20)]);
    let stored = run["annotations"].as_array().unwrap();
    assert_eq!(stored.len(), 120);
    for (i, a) in stored.iter().enumerate() {
        assert_eq!(a["path"], format!("ci/step-{i}.sh"));
        assert_eq!(
            a["message"],
            format!("nginx -g 'daemon off;' started by step {i}")
        );
    }
    assert_eq!(stored[0]["annotation_level"], "failure");
    assert_eq!(stored[1]["annotation_level"], "warning");
    assert_eq!(stored[2]["annotation_level"], "notice");
    assert_eq!(stored[8]["start_line"], 1);
    assert_eq!(stored[8]["end_line"], 1);
    assert_eq!(stored[7]["title"].as_str().unwrap().chars().count(), 255);
    let summary = run["output"]["summary"].as_str().unwrap();
    assert!(summary.chars().count() <= SUMMARY_MAX_CHARS);
    assert!(summary.contains("Truncated"));
}

#[test]
fn enterprise_server_api_path_is_kept() {
    // GitHub Enterprise Server: GITHUB_API_URL = https://HOST/api/v3.
    let mock = MockGitHub::start(&["--prefix", "/api/v3", "--seed", "120"]);
    let ctx = mock.context();
    let output = output_with(51);
    let body = comment_body("ghes");
    let warnings = publish(&ctx, Some(&body), Some((&output, Conclusion::Neutral)));
    assert_eq!(warnings, Vec::<String>::new());

    let state = mock.state();
    assert_no_invalid_request(&state);
    let requests = state["requests"].as_array().unwrap();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(
            r["path"].as_str().unwrap().starts_with("/api/v3/"),
            "{r:#?}"
        );
    }
    // The Link header's next page (absolute, with the prefix) was followed.
    assert!(requests
        .iter()
        .any(|r| r["operation"] == "issues/list-comments" && r["page"] == 2));
    assert_eq!(marker_comments(&mock.comments()).len(), 1);
    let run = &state["check_runs"][0];
    assert_eq!(run["conclusion"], "neutral");
    assert_eq!(run["annotations"].as_array().unwrap().len(), 51);
}

#[test]
fn read_only_token_degrades_to_one_warning_per_feature() {
    // A pull request from a fork: every write answers 403.
    let mock = MockGitHub::start(&["--forbid-writes", "--seed", "5"]);
    let ctx = mock.context();
    let output = output_with(60);
    let warnings = publish(
        &ctx,
        Some(&comment_body("fail")),
        Some((&output, Conclusion::Failure)),
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("pull request comment not posted"));
    assert!(warnings[0].contains("`pull-requests: write`"));
    assert!(warnings[0].contains("HTTP 403"));
    assert!(warnings[1].contains("check run not created"));
    assert!(warnings[1].contains("`checks: write`"));
    for w in &warnings {
        assert!(w.contains("Resource not accessible by integration"), "{w}");
        assert!(w.contains("job summary"), "{w}");
        assert!(!w.contains(TOKEN), "{w}");
        assert!(!w.contains('\n'), "{w}");
    }

    let state = mock.state();
    // The bodies were still valid; nothing was written.
    assert_no_invalid_request(&state);
    assert_eq!(mock.comments().len(), 5);
    assert!(state["check_runs"].as_array().unwrap().is_empty());
}

#[test]
fn token_never_appears_in_warnings() {
    // The mock quotes the Authorization header it got in its 401 message.
    let mock = MockGitHub::start(&["--echo-auth", "--seed", "0"]);
    let mut ctx = mock.context();
    ctx.token = "ghp_wrongTOKENthatMustNotLeak42".to_string();
    let output = output_with(1);
    let warnings = publish(
        &ctx,
        Some(&comment_body("x")),
        Some((&output, Conclusion::Success)),
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    for w in &warnings {
        assert!(w.contains("HTTP 401"), "{w}");
        assert!(w.contains("Bad credentials: Bearer ***"), "{w}");
        assert!(!w.contains("wrongTOKEN"), "{w}");
    }
}

#[test]
fn unreachable_api_and_unusable_token_warn_without_panicking() {
    // Nothing listens on port 1.
    let ctx = PrContext {
        api_url: "http://127.0.0.1:1".to_string(),
        token: TOKEN.to_string(),
        owner: "o".to_string(),
        repo: "r".to_string(),
        pr_number: 1,
        head_sha: HEAD_SHA.to_string(),
    };
    let output = output_with(3);
    let warnings = publish(
        &ctx,
        Some(&comment_body("x")),
        Some((&output, Conclusion::Failure)),
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].starts_with("pull request comment not posted: "));
    assert!(warnings[1].starts_with("check run not created: "));
    for w in &warnings {
        assert!(w.contains("127.0.0.1:1"), "{w}");
        assert!(!w.contains(TOKEN), "{w}");
    }

    // A token that cannot be an HTTP header value, and an API URL that is not one.
    let mut bad = ctx.clone();
    bad.token = "secret\nvalue".to_string();
    let warnings = publish(&bad, Some("x"), None);
    assert_eq!(warnings.len(), 1);
    assert!(!warnings[0].contains("secret"), "{warnings:?}");
    let mut bad = ctx.clone();
    bad.api_url = "not a url".to_string();
    let warnings = publish(&bad, Some("x"), Some((&output, Conclusion::Failure)));
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("not a url"), "{warnings:?}");

    // Nothing asked, nothing done.
    assert!(publish(&ctx, None, None).is_empty());
}

// --- the pull request from the Actions environment ---------------------------------------------

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_payload(json: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "guard-pr-test-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("event.json");
    std::fs::write(&path, json).unwrap();
    path
}

const PULL_REQUEST_PAYLOAD: &str = r#"{
  "action": "synchronize",
  "number": 42,
  "pull_request": {"number": 42, "head": {"sha": "0123456789abcdef0123456789abcdef01234567", "ref": "topic"}},
  "repository": {"full_name": "payload-owner/payload-repo"}
}"#;

fn from(vars: &[(&str, &str)]) -> Result<Option<PrContext>, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PrContext::from_env(&|name| map.get(name).cloned())
}

#[test]
fn from_env_reads_a_pull_request_event() {
    let payload = temp_payload(PULL_REQUEST_PAYLOAD);
    let payload = payload.to_str().unwrap();
    let ctx = from(&[
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_EVENT_PATH", payload),
        ("GITHUB_REPOSITORY", "octo-org/hello-world"),
        ("INPUT_GITHUB-TOKEN", "ghs_input"),
        ("GITHUB_TOKEN", "ghs_env"),
    ])
    .unwrap()
    .expect("a pull request");
    assert_eq!(ctx.pr_number, 42);
    assert_eq!(ctx.head_sha, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(ctx.owner, "octo-org");
    assert_eq!(ctx.repo, "hello-world");
    assert_eq!(ctx.api_url, "https://api.github.com");
    assert_eq!(ctx.token, "ghs_input");
    assert!(!format!("{ctx:?}").contains("ghs_input"));

    // pull_request_target, an enterprise API URL, the token from GITHUB_TOKEN when the input is
    // empty, the number from pull_request.number.
    let only_nested = temp_payload(
        r#"{"pull_request": {"number": 9, "head": {"sha": "abcdef0123456789abcdef0123456789abcdef01"}}}"#,
    );
    let ctx = from(&[
        ("GITHUB_EVENT_NAME", "pull_request_target"),
        ("GITHUB_EVENT_PATH", only_nested.to_str().unwrap()),
        ("GITHUB_REPOSITORY", "o/r"),
        ("GITHUB_API_URL", "https://ghe.example.com/api/v3/"),
        ("INPUT_GITHUB-TOKEN", ""),
        ("GITHUB_TOKEN", "ghs_env"),
    ])
    .unwrap()
    .expect("a pull request");
    assert_eq!(ctx.pr_number, 9);
    assert_eq!(ctx.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(ctx.token, "ghs_env");
}

#[test]
fn from_env_is_none_without_a_pull_request_or_a_token() {
    let payload = temp_payload(PULL_REQUEST_PAYLOAD);
    let payload = payload.to_str().unwrap();
    for event in ["push", "workflow_dispatch", "schedule", ""] {
        let got = from(&[
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_EVENT_PATH", payload),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_TOKEN", "ghs_env"),
        ]);
        assert_eq!(got, Ok(None), "{event}");
    }
    let no_token = from(&[
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_EVENT_PATH", payload),
        ("GITHUB_REPOSITORY", "o/r"),
    ]);
    assert_eq!(no_token, Ok(None));
    let empty_token = from(&[
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_EVENT_PATH", payload),
        ("GITHUB_REPOSITORY", "o/r"),
        ("INPUT_GITHUB-TOKEN", " "),
        ("GITHUB_TOKEN", ""),
    ]);
    assert_eq!(empty_token, Ok(None));
}

#[test]
fn from_env_rejects_unusable_pull_request_events() {
    let payload = temp_payload(PULL_REQUEST_PAYLOAD);
    let payload = payload.to_str().unwrap();
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut vars = vec![
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_TOKEN", "ghs_env"),
        ];
        vars.extend_from_slice(extra);
        vars
    };
    let missing_path = from(&base(&[("GITHUB_REPOSITORY", "o/r")]));
    assert!(missing_path.unwrap_err().contains("GITHUB_EVENT_PATH"));
    let unreadable = from(&base(&[
        ("GITHUB_REPOSITORY", "o/r"),
        ("GITHUB_EVENT_PATH", "/nonexistent/event.json"),
    ]));
    assert!(unreadable.unwrap_err().contains("/nonexistent/event.json"));
    let mut vars = base(&[("GITHUB_REPOSITORY", "not-a-pair")]);
    vars.push(("GITHUB_EVENT_PATH", payload));
    assert!(from(&vars).unwrap_err().contains("not-a-pair"));
    let mut vars = base(&[("GITHUB_REPOSITORY", "o/../x")]);
    vars.push(("GITHUB_EVENT_PATH", payload));
    assert!(from(&vars).is_err());
    let no_sha = temp_payload(r#"{"number": 3, "pull_request": {"number": 3}}"#);
    let mut vars = base(&[("GITHUB_REPOSITORY", "o/r")]);
    vars.push(("GITHUB_EVENT_PATH", no_sha.to_str().unwrap()));
    assert!(from(&vars).unwrap_err().contains("head.sha"));
    // Without GITHUB_REPOSITORY the payload's repository is used.
    let mut vars = base(&[]);
    vars.push(("GITHUB_EVENT_PATH", payload));
    let ctx = from(&vars).unwrap().unwrap();
    assert_eq!(
        (ctx.owner.as_str(), ctx.repo.as_str()),
        ("payload-owner", "payload-repo")
    );
}

// --- request bodies ------------------------------------------------------------------------------

#[test]
fn comment_body_starts_with_the_marker_and_fits_github_limit() {
    let short = comment_body("## summary\n\npass");
    assert_eq!(short, format!("{MARKER}\n## summary\n\npass"));

    // Over the limit, with multi-byte characters and a code fence left open at the cut.
    let mut long = String::from("## summary\n\n```\n");
    while long.chars().count() < 2 * COMMENT_MAX_CHARS {
        long.push_str("nginx -g 'daemon off;' — é ü 漢字\n");
    }
    let body = comment_body(&long);
    assert!(body.starts_with(&format!("{MARKER}\n## summary")));
    assert!(body.chars().count() <= COMMENT_MAX_CHARS);
    assert!(body.chars().count() > COMMENT_MAX_CHARS - 1_000);
    assert!(body.contains("Truncated"));
    assert!(body.contains("job summary"));
    let fences = body
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    assert_eq!(fences % 2, 0, "the open code fence is closed");
    // Cut at a line break: no half line before the closing fence.
    let before_note = body.split("\n```\n\n---").next().unwrap();
    assert!(before_note.ends_with("漢字"));

    // Exactly at the limit: unchanged.
    let exact = "a".repeat(COMMENT_MAX_CHARS - MARKER.len() - 1);
    assert_eq!(comment_body(&exact).chars().count(), COMMENT_MAX_CHARS);
    assert!(!comment_body(&exact).contains("Truncated"));
}

#[test]
fn annotations_go_in_batches_of_50() {
    let a: Vec<_> = (0..120).map(annotation).collect();
    let sizes: Vec<_> = batches(&a).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    assert!(batches(&[]).is_empty());
    assert_eq!(batches(&a[..50]).len(), 1);

    let output = output_with(120);
    let create = check_run_create_body(HEAD_SHA, &output, Conclusion::Success);
    assert_eq!(create["name"], "webserver-exec-guard");
    assert_eq!(create["status"], "completed");
    assert_eq!(create["conclusion"], "success");
    assert_eq!(create["head_sha"], HEAD_SHA);
    assert_eq!(
        create["output"]["annotations"].as_array().unwrap().len(),
        50
    );
    let update = check_run_update_body(&output, batches(&output.annotations)[2]);
    assert_eq!(
        update["output"]["annotations"].as_array().unwrap().len(),
        20
    );
    assert_eq!(update["output"]["title"], "120 findings");
    assert!(update.get("conclusion").is_none());

    let empty = check_run_create_body(HEAD_SHA, &output_with(0), Conclusion::Neutral);
    assert!(empty["output"].get("annotations").is_none());
}
