//! Repository files read at the job's commit (src/github/contents.rs) from the local stand-in
//! for the GitHub API, tests/js/mock_github.js, serving a fixture directory as the commit's tree
//! and checking every request (path and query parameters) against GitHub's official OpenAPI
//! description. Also: the target read from the Actions environment.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::symlink;

use common::mock_github::{assert_no_invalid_request, MockGitHub, TOKEN};
use common::TempDir;
use guard::github::contents::{
    read_at_commit, repo_at_from_env, RepoAt, RepoPath, MAX_DIR_FILES, MAX_FILE_BYTES,
};
use serde_json::Value;

/// The commit the mock serves the fixture at (its default `--commit`).
const SHA: &str = "3dca65fa3e8d4b3da3f3d056c59aee1c50f41390";
const ALLOWLIST: &str = ".github/webserver-exec-guard.yml";
const ALLOWLIST_TEXT: &str =
    "allow:\n  - recipe: webserver_exec\n    exe: /usr/sbin/nginx\n    reason: integration tests\n";

/// The repository at [`SHA`]: an allowlist, a recipes directory (two recipes, a name with a space
/// and a `#`, a file that is not YAML, a subdirectory), a symbolic link out of the repository and
/// one to a file of it, files just under and over the bounds.
fn fixture() -> TempDir {
    let dir = TempDir::new("contents-fixture");
    dir.write(ALLOWLIST, ALLOWLIST_TEXT);
    dir.write("recipes/a.yaml", "- name: a\n");
    dir.write("recipes/b.yml", "- name: b\n");
    dir.write("recipes/my file #1.yaml", "- name: spaced\n");
    dir.write("recipes/README.md", "not a recipe\n");
    dir.write("recipes/nested/deep.yaml", "- name: deep\n");
    dir.write("links/ok.yaml", "- name: ok\n");
    symlink("../../../etc/passwd", dir.join("links/evil.yml")).unwrap();
    symlink("recipes/a.yaml", dir.join("alias.yml")).unwrap();
    // 8 KiB: over the --inline-limit the tests give, so it comes from the blob endpoint.
    dir.write("large.yml", large_text(8 * 1024));
    dir.write("huge.yml", vec![b'#'; MAX_FILE_BYTES as usize + 1]);
    for i in 0..=MAX_DIR_FILES {
        dir.write(format!("many/r{i:03}.yaml"), format!("- name: r{i}\n"));
    }
    dir
}

fn large_text(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

fn start(files: &TempDir, extra: &[&str]) -> MockGitHub {
    let mut args = vec!["--files", files.path().to_str().unwrap(), "--seed", "0"];
    args.extend_from_slice(extra);
    MockGitHub::start(&args)
}

fn target(mock: &MockGitHub) -> RepoAt {
    RepoAt {
        api_url: mock.api_url(),
        token: TOKEN.to_string(),
        owner: "octo-org".to_string(),
        repo: "hello.world".to_string(),
        sha: SHA.to_string(),
    }
}

fn requests(state: &Value) -> Vec<Value> {
    state["requests"].as_array().expect("requests").clone()
}

/// One line naming the path and the commit, without the token.
fn assert_good_error(err: &str, path: &str) {
    assert!(!err.contains(TOKEN), "{err}");
    assert!(!err.contains('\n') && !err.contains('\r'), "{err:?}");
    assert!(err.contains(&format!("{path:?}")), "{err}");
    assert!(err.contains(SHA), "{err}");
}

#[test]
fn file_is_read_at_the_commit_and_verified() {
    let files = fixture();
    let mock = start(&files, &[]);
    let at = target(&mock);

    let got = read_at_commit(&at, ALLOWLIST).unwrap();
    assert_eq!(got, RepoPath::File(ALLOWLIST_TEXT.as_bytes().to_vec()));

    // A name with a space and a `#`, percent-encoded in the path.
    let got = read_at_commit(&at, "recipes/my file #1.yaml").unwrap();
    assert_eq!(got, RepoPath::File(b"- name: spaced\n".to_vec()));

    // A symbolic link to a file of the repository: GitHub answers with the file.
    let got = read_at_commit(&at, "alias.yml").unwrap();
    assert_eq!(got, RepoPath::File(b"- name: a\n".to_vec()));

    let state = mock.state();
    assert_no_invalid_request(&state);
    let requests = requests(&state);
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for r in &requests {
        assert_eq!(r["operation"], "repos/get-content", "{r:#?}");
        assert_eq!(r["query"], format!("?ref={SHA}"), "{r:#?}");
        assert_eq!(r["media"], "object", "{r:#?}");
        assert_eq!(r["status"], 200, "{r:#?}");
    }
    assert_eq!(
        requests[0]["path"],
        "/repos/octo-org/hello.world/contents/.github/webserver-exec-guard.yml"
    );
    assert_eq!(
        requests[1]["path"],
        "/repos/octo-org/hello.world/contents/recipes/my%20file%20%231.yaml"
    );
    assert_eq!(requests[1]["repo_path"], "recipes/my file #1.yaml");
}

#[test]
fn directory_gives_its_yaml_files_one_level_deep() {
    let files = fixture();
    let mock = start(&files, &[]);
    let at = target(&mock);

    let expected = RepoPath::Dir(vec![
        ("recipes/a.yaml".to_string(), b"- name: a\n".to_vec()),
        ("recipes/b.yml".to_string(), b"- name: b\n".to_vec()),
        (
            "recipes/my file #1.yaml".to_string(),
            b"- name: spaced\n".to_vec(),
        ),
    ]);
    assert_eq!(read_at_commit(&at, "recipes").unwrap(), expected);
    assert_eq!(read_at_commit(&at, "recipes/").unwrap(), expected);

    let state = mock.state();
    assert_no_invalid_request(&state);
    let read: Vec<_> = requests(&state)
        .iter()
        .map(|r| r["repo_path"].as_str().unwrap().to_string())
        .collect();
    // Neither README.md nor the subdirectory is read.
    assert_eq!(
        read,
        [
            "recipes",
            "recipes/a.yaml",
            "recipes/b.yml",
            "recipes/my file #1.yaml"
        ]
        .repeat(2)
    );
}

#[test]
fn missing_path_is_missing_but_a_missing_commit_is_an_error() {
    let files = fixture();
    let mock = start(&files, &[]);
    let mut at = target(&mock);
    assert_eq!(
        read_at_commit(&at, ".github/nothing-here.yml").unwrap(),
        RepoPath::Missing
    );
    assert_eq!(
        read_at_commit(&at, "no/such/dir/").unwrap(),
        RepoPath::Missing
    );

    // GitHub answers 404 for a commit it does not have too: that is not "no allowlist".
    at.sha = "0000000000000000000000000000000000000001".to_string();
    let err = read_at_commit(&at, ALLOWLIST).unwrap_err();
    assert!(err.contains("No commit found"), "{err}");
    assert!(err.contains(&at.sha), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert_no_invalid_request(&mock.state());
}

#[test]
fn forbidden_names_the_permission_needed() {
    let files = fixture();
    let mock = start(&files, &["--contents-status", "403"]);
    let at = target(&mock);
    for path in [ALLOWLIST, "recipes"] {
        let err = read_at_commit(&at, path).unwrap_err();
        assert_good_error(&err, path);
        assert!(err.contains("HTTP 403"), "{err}");
        assert!(err.contains("`contents: read`"), "{err}");
        assert!(
            err.contains("Resource not accessible by integration"),
            "{err}"
        );
    }
    assert_no_invalid_request(&mock.state());
}

#[test]
fn server_errors_and_an_unreachable_api_are_errors() {
    let files = fixture();
    let mock = start(&files, &["--contents-status", "500"]);
    let at = target(&mock);
    let err = read_at_commit(&at, ALLOWLIST).unwrap_err();
    assert_good_error(&err, ALLOWLIST);
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(!err.contains("contents: read"), "{err}");
    assert_no_invalid_request(&mock.state());

    // Nothing listens on port 1.
    let mut at = target(&mock);
    at.api_url = "http://127.0.0.1:1".to_string();
    let err = read_at_commit(&at, ALLOWLIST).unwrap_err();
    assert_good_error(&err, ALLOWLIST);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn content_that_does_not_match_its_blob_id_is_refused() {
    let files = fixture();
    let mock = start(
        &files,
        &[
            "--tamper",
            ALLOWLIST,
            "--tamper",
            "recipes/b.yml",
            "--tamper",
            "large.yml",
            "--inline-limit",
            "4096",
        ],
    );
    let at = target(&mock);
    for path in [ALLOWLIST, "recipes", "large.yml"] {
        let err = read_at_commit(&at, path).unwrap_err();
        assert_good_error(&err, path);
        assert!(err.contains("does not match its blob id"), "{path}: {err}");
        assert!(err.contains("refused"), "{err}");
    }
    // An untampered file of the same mock is fine.
    assert_eq!(
        read_at_commit(&at, "recipes/a.yaml").unwrap(),
        RepoPath::File(b"- name: a\n".to_vec())
    );
    assert_no_invalid_request(&mock.state());
}

#[test]
fn large_file_comes_from_its_blob_and_an_oversized_one_is_refused() {
    let files = fixture();
    let mock = start(&files, &["--inline-limit", "4096"]);
    let at = target(&mock);

    let got = read_at_commit(&at, "large.yml").unwrap();
    assert_eq!(got, RepoPath::File(large_text(8 * 1024)));

    let err = read_at_commit(&at, "huge.yml").unwrap_err();
    assert_good_error(&err, "huge.yml");
    assert!(
        err.contains(&format!("is {} bytes", MAX_FILE_BYTES + 1)),
        "{err}"
    );
    assert!(err.contains("1 MiB"), "{err}");

    let state = mock.state();
    assert_no_invalid_request(&state);
    let operations: Vec<_> = requests(&state)
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_string(),
                r["repo_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // The oversized file's blob is never fetched.
    assert_eq!(
        operations,
        [
            ("repos/get-content".to_string(), "large.yml".to_string()),
            ("git/get-blob".to_string(), "large.yml".to_string()),
            ("repos/get-content".to_string(), "huge.yml".to_string()),
        ]
    );
}

#[test]
fn directory_over_the_bound_is_refused() {
    let files = fixture();
    let mock = start(&files, &[]);
    let at = target(&mock);
    let err = read_at_commit(&at, "many").unwrap_err();
    assert_good_error(&err, "many");
    assert!(
        err.contains(&format!("{} *.yml / *.yaml files", MAX_DIR_FILES + 1)),
        "{err}"
    );
    assert!(err.contains(&format!("limit of {MAX_DIR_FILES}")), "{err}");
    // Only the listing was asked for.
    let state = mock.state();
    assert_no_invalid_request(&state);
    assert_eq!(requests(&state).len(), 1);
}

#[test]
fn symbolic_links_and_submodules_are_refused() {
    let files = fixture();
    let mock = start(
        &files,
        &[
            "--submodule",
            "vendor/rules.yml=https://example.invalid/rules.git",
        ],
    );
    let at = target(&mock);

    // A link out of the repository, read directly and as an entry of a directory.
    let err = read_at_commit(&at, "links/evil.yml").unwrap_err();
    assert_good_error(&err, "links/evil.yml");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(err.contains("etc/passwd"), "{err}");
    let err = read_at_commit(&at, "links").unwrap_err();
    assert_good_error(&err, "links");
    assert!(
        err.contains("\"links/evil.yml\" is a symbolic link"),
        "{err}"
    );

    // A submodule: GitHub lists it as a "file"; reading it tells.
    let err = read_at_commit(&at, "vendor/rules.yml").unwrap_err();
    assert_good_error(&err, "vendor/rules.yml");
    assert!(err.contains("submodule"), "{err}");
    let err = read_at_commit(&at, "vendor").unwrap_err();
    assert_good_error(&err, "vendor");
    assert!(err.contains("\"vendor/rules.yml\" is a submodule"), "{err}");

    assert_no_invalid_request(&mock.state());
}

#[test]
fn path_traversal_is_refused_without_a_request() {
    let files = fixture();
    let mock = start(&files, &[]);
    let at = target(&mock);
    for path in [
        "../outside.yml",
        "recipes/../../x.yml",
        "recipes/..",
        "..",
        "/etc/passwd",
        "/.github/webserver-exec-guard.yml",
        "recipes\0.yml",
        "./recipes",
        "recipes//a.yaml",
        "",
    ] {
        let err = read_at_commit(&at, path).unwrap_err();
        assert!(err.contains("refused"), "{path:?}: {err}");
        assert!(err.contains(SHA), "{err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
    assert!(requests(&mock.state()).is_empty());
}

#[test]
fn token_never_appears_in_an_error() {
    // The mock quotes the Authorization header it got in its 401 message.
    let files = fixture();
    let mock = start(&files, &["--echo-auth"]);
    let mut at = target(&mock);
    at.token = "ghp_wrongTOKENthatMustNotLeak42".to_string();
    for path in [ALLOWLIST, "recipes"] {
        let err = read_at_commit(&at, path).unwrap_err();
        assert!(err.contains("HTTP 401"), "{err}");
        assert!(err.contains("Bad credentials: Bearer ***"), "{err}");
        assert!(err.contains("not accepted"), "{err}");
        assert!(!err.contains("wrongTOKEN"), "{err}");
    }

    // A token that cannot be a header value, a path that quotes the token, a bad commit id and
    // a repository name that would change the route: refused before any request.
    let good = target(&mock);
    let mut bad = good.clone();
    bad.token = "secret\nvalue".to_string();
    let err = read_at_commit(&bad, ALLOWLIST).unwrap_err();
    assert!(!err.contains("secret"), "{err}");
    let err = read_at_commit(&good, &format!("../{TOKEN}")).unwrap_err();
    assert!(!err.contains(TOKEN), "{err}");
    let mut bad = good.clone();
    bad.sha = "main".to_string();
    let err = read_at_commit(&bad, ALLOWLIST).unwrap_err();
    assert!(err.contains("not a commit id"), "{err}");
    let mut bad = good.clone();
    bad.repo = "../../user".to_string();
    assert!(read_at_commit(&bad, ALLOWLIST).is_err());
    assert!(!format!("{good:?}").contains(TOKEN));

    let state = mock.state();
    // Only the two reads with the wrong token reached the mock.
    assert!(requests(&state).iter().all(|r| r["status"] == 401));
    assert_eq!(requests(&state).len(), 2);
}

#[test]
fn enterprise_server_api_path_is_kept() {
    let files = fixture();
    let mock = start(&files, &["--prefix", "/api/v3", "--inline-limit", "4096"]);
    let at = target(&mock);
    assert!(matches!(
        read_at_commit(&at, "recipes").unwrap(),
        RepoPath::Dir(files) if files.len() == 3
    ));
    assert!(matches!(
        read_at_commit(&at, "large.yml").unwrap(),
        RepoPath::File(_)
    ));
    let state = mock.state();
    assert_no_invalid_request(&state);
    for r in requests(&state) {
        assert!(
            r["path"].as_str().unwrap().starts_with("/api/v3/repos/"),
            "{r:#?}"
        );
        assert_eq!(r["status"], 200, "{r:#?}");
    }
}

// --- the target from the Actions environment --------------------------------------------------

fn from(vars: &[(&str, &str)]) -> Result<RepoAt, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    repo_at_from_env(&|name| map.get(name).cloned())
}

#[test]
fn repo_at_from_env_reads_the_actions_environment() {
    let at = from(&[
        ("GITHUB_REPOSITORY", "octo-org/hello-world"),
        ("GITHUB_SHA", "3DCA65FA3E8D4B3DA3F3D056C59AEE1C50F41390"),
        ("INPUT_GITHUB-TOKEN", "ghs_input"),
        ("GITHUB_TOKEN", "ghs_env"),
    ])
    .unwrap();
    assert_eq!(
        at,
        RepoAt {
            api_url: "https://api.github.com".to_string(),
            token: "ghs_input".to_string(),
            owner: "octo-org".to_string(),
            repo: "hello-world".to_string(),
            sha: SHA.to_string(),
        }
    );
    assert!(!format!("{at:?}").contains("ghs_input"));

    let at = from(&[
        ("GITHUB_API_URL", "https://ghe.example.com/api/v3/"),
        ("GITHUB_REPOSITORY", "o/r"),
        ("GITHUB_SHA", SHA),
        ("INPUT_GITHUB-TOKEN", " "),
        ("GITHUB_TOKEN", "ghs_env"),
    ])
    .unwrap();
    assert_eq!(at.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(at.token, "ghs_env");
}

#[test]
fn repo_at_from_env_names_what_is_missing() {
    let all = [
        ("GITHUB_REPOSITORY", "o/r"),
        ("GITHUB_SHA", SHA),
        ("GITHUB_TOKEN", "ghs_env"),
    ];
    let without = |name: &str| {
        let vars: Vec<_> = all.iter().copied().filter(|(k, _)| *k != name).collect();
        from(&vars).unwrap_err()
    };
    assert!(without("GITHUB_REPOSITORY").contains("GITHUB_REPOSITORY"));
    assert!(without("GITHUB_SHA").contains("GITHUB_SHA"));
    let err = without("GITHUB_TOKEN");
    assert!(
        err.contains("GITHUB_TOKEN") && err.contains("INPUT_GITHUB-TOKEN"),
        "{err}"
    );

    for (name, value) in [
        ("GITHUB_REPOSITORY", "not-a-pair"),
        ("GITHUB_REPOSITORY", "o/../x"),
        ("GITHUB_SHA", "main"),
        ("GITHUB_SHA", "3dca65f"),
    ] {
        let mut vars: Vec<_> = all.iter().copied().filter(|(k, _)| *k != name).collect();
        vars.push((name, value));
        let err = from(&vars).unwrap_err();
        assert!(err.contains(name), "{err}");
        assert!(!err.contains("ghs_env"), "{err}");
    }
}
