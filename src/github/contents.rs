//! Reads repository files as they are in the job's commit (`GITHUB_SHA`) through the GitHub REST
//! contents API, never from the working tree: the allowlist and the `recipes:` paths configure
//! the guard, and the working tree belongs to the build it watches — any step may rewrite a
//! checked-out file — while the commit cannot be changed by anything that runs in the job.
//!
//! Requests made (paths relative to `GITHUB_API_URL`), with the job's token, which needs
//! `contents: read` (a default permission of `GITHUB_TOKEN`):
//! - `GET /repos/{owner}/{repo}/contents/{path}?ref={sha}` with the `object` media type
//!   (`application/vnd.github.object+json`): a directory comes as one object with `entries`, and a
//!   file over 1 MB comes without its content (`encoding: "none"`), which the default media type
//!   does not serve at all;
//! - `GET /repos/{owner}/{repo}/git/blobs/{sha}` for such a file, when it is within
//!   [`MAX_FILE_BYTES`].
//!
//! Every file's bytes are checked against the git blob id GitHub gives with them (SHA-1 of
//! `blob <length>\0` and the bytes), and a directory entry's against the id in the listing: an
//! answer cut short or corrupted, or content changed without its id, is refused, never used.
//! Errors are one line naming the path and the commit, scrubbed of the token.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, ACCEPT};
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::github::api::{self, DEFAULT_API_URL};

/// The largest file read, in bytes (1 MiB): an allowlist or a recipe is a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The most `*.yml` / `*.yaml` files read from one directory.
pub const MAX_DIR_FILES: usize = 100;

/// The most one [`read_at_commit`] may take, retries included: the pre step must not hang on a
/// slow API.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// GitHub lists at most this many entries of a directory through the contents API and drops the
/// rest without saying so.
const LISTING_LIMIT: usize = 1000;
const OBJECT_MEDIA_TYPE: &str = "application/vnd.github.object+json";

/// Where repository files are read from: the job's commit.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoAt {
    /// Without a trailing `/`; may carry a path (`https://ghe.example.com/api/v3`).
    pub api_url: String,
    pub token: String,
    pub owner: String,
    pub repo: String,
    /// The commit id (`GITHUB_SHA`), 40 hex digits: a branch or tag name could move while the
    /// job runs, a commit cannot.
    pub sha: String,
}

/// Never prints the token.
impl fmt::Debug for RepoAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoAt")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("sha", &self.sha)
            .finish()
    }
}

/// What a path of the repository is at the commit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RepoPath {
    /// A file's bytes.
    File(Vec<u8>),
    /// A directory's `*.yml` and `*.yaml` files — path in the repository and bytes — sorted by
    /// path; possibly none.
    Dir(Vec<(String, Vec<u8>)>),
    /// Nothing at that path in the commit.
    Missing,
}

/// Builds a [`RepoAt`] from the Actions environment: `GITHUB_API_URL` (default
/// [`DEFAULT_API_URL`]), `GITHUB_REPOSITORY`, `GITHUB_SHA`, and the token from the input
/// `github-token` (`INPUT_GITHUB-TOKEN`), else `GITHUB_TOKEN`. `Err` names the variable that is
/// missing or unusable.
pub fn repo_at_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<RepoAt, String> {
    let non_empty = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let full_name = non_empty("GITHUB_REPOSITORY").ok_or("GITHUB_REPOSITORY is not set")?;
    let (owner, repo) = full_name
        .split_once('/')
        .filter(|(o, r)| api::is_name(o) && api::is_name(r))
        .ok_or_else(|| format!("GITHUB_REPOSITORY {full_name:?} is not owner/repo"))?;
    let sha = non_empty("GITHUB_SHA").ok_or("GITHUB_SHA is not set")?;
    if !is_object_id(&sha) {
        return Err(format!("GITHUB_SHA {sha:?} is not a commit id"));
    }
    let token = non_empty("INPUT_GITHUB-TOKEN")
        .or_else(|| non_empty("GITHUB_TOKEN"))
        .ok_or(
            "no token: neither INPUT_GITHUB-TOKEN (input `github-token`) nor GITHUB_TOKEN is set",
        )?;
    let api_url = non_empty("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string());
    Ok(RepoAt {
        api_url: api_url.trim_end_matches('/').to_string(),
        token,
        owner: owner.to_string(),
        repo: repo.to_string(),
        sha: sha.to_ascii_lowercase(),
    })
}

/// Reads `path` (relative to the repository root, `/`-separated; a trailing `/` is allowed) at
/// `at.sha`.
///
/// A file comes as [`RepoPath::File`], verified against its blob id. A directory comes as
/// [`RepoPath::Dir`] with its files named `*.yml` or `*.yaml` (one level: subdirectories are
/// not read), each verified, as `guard run --recipes DIR` reads a directory. 404 is
/// [`RepoPath::Missing`]. A symbolic link GitHub does not resolve to a file of the repository,
/// a submodule — as the path or as a `*.yml` / `*.yaml` entry of the directory — a file over
/// [`MAX_FILE_BYTES`], a directory with more than [`MAX_DIR_FILES`] such files, and every
/// failure of the API (401, 403, 5xx, the network, a deadline of 60 s) are an `Err`: one line
/// naming the path and the commit, never the token.
///
/// A path that is empty, absolute (leading `/`), has a `.`, `..` or empty segment, or holds a
/// NUL is refused before any request.
pub fn read_at_commit(at: &RepoAt, path: &str) -> Result<RepoPath, String> {
    let failed = |why: &str| {
        api::scrub(
            &format!(
                "cannot read {path:?} at commit {}: {why}",
                at.sha.escape_debug()
            ),
            &at.token,
        )
    };
    let segments = repo_path(path).map_err(|why| failed(&why))?;
    check_target(at).map_err(|why| failed(&why))?;
    let read = std::panic::catch_unwind(AssertUnwindSafe(|| run_read(at, &segments)));
    match read {
        Ok(read) => read.map_err(|why| failed(&why)),
        Err(_) => Err(failed("the GitHub client failed unexpectedly")),
    }
}

/// The segments of a repository path, or why it is refused.
fn repo_path(path: &str) -> Result<Vec<&str>, String> {
    if path.contains('\0') {
        return Err("a path with a NUL byte is refused".to_string());
    }
    if path.starts_with('/') {
        return Err("an absolute path is refused: give it relative to the repository root".into());
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("an empty path (the repository root) is refused".to_string());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err("a path with an empty, `.` or `..` segment is refused".to_string());
    }
    Ok(segments)
}

/// What goes into a route or a query must not change it, and octocrab panics on a token that is
/// not a header value.
fn check_target(at: &RepoAt) -> Result<(), String> {
    api::check_token(&at.token)?;
    if !api::is_name(&at.owner) || !api::is_name(&at.repo) {
        return Err(format!(
            "{:?} is not a repository name",
            format!("{}/{}", at.owner, at.repo)
        ));
    }
    if !is_object_id(&at.sha) {
        return Err("the commit is not a commit id (40 hex digits)".to_string());
    }
    Ok(())
}

/// A full git object id (a commit's, a blob's): GitHub's repositories are SHA-1 ones, so 40
/// hex digits.
fn is_object_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn run_read(at: &RepoAt, segments: &[&str]) -> Result<RepoPath, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        // octocrab's client needs the runtime to exist while it is built.
        let crab = api::client(&at.api_url, &at.token)?;
        match tokio::time::timeout(READ_DEADLINE, read(&crab, at, segments)).await {
            Ok(read) => read,
            Err(_) => Err(format!(
                "no answer from {} within {} s",
                at.api_url,
                READ_DEADLINE.as_secs()
            )),
        }
    })
}

/// An answer of the contents API (object media type); what is not read is ignored.
#[derive(Deserialize, Default)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    entries: Option<Vec<Content>>,
}

/// An answer of the blob endpoint.
#[derive(Deserialize)]
struct Blob {
    content: String,
    encoding: String,
}

async fn read(crab: &Octocrab, at: &RepoAt, segments: &[&str]) -> Result<RepoPath, String> {
    let Some(found) = get_content(crab, at, segments).await? else {
        return Ok(RepoPath::Missing);
    };
    match found.kind.as_str() {
        "dir" => read_dir(crab, at, segments, found).await.map(RepoPath::Dir),
        _ => file_bytes(crab, at, &found).await.map(RepoPath::File),
    }
}

/// The `*.yml` and `*.yaml` files of a directory, one level.
async fn read_dir(
    crab: &Octocrab,
    at: &RepoAt,
    segments: &[&str],
    listing: Content,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = segments.join("/");
    let entries = listing
        .entries
        .ok_or("GitHub answered a directory without its entries")?;
    if entries.len() >= LISTING_LIMIT {
        return Err(format!(
            "the directory has {} entries or more, more than GitHub's contents API lists; \
             keep the recipes in a directory of their own",
            LISTING_LIMIT
        ));
    }
    let mut files = Vec::new();
    for entry in entries {
        if !is_yaml_name(&entry.name) {
            continue;
        }
        if entry.name.contains('/') || entry.path != format!("{dir}/{}", entry.name) {
            return Err(format!(
                "GitHub listed {:?} as an entry of the directory",
                entry.path
            ));
        }
        match entry.kind.as_str() {
            // Submodules are listed as "file" too (GitHub's backwards compatibility); reading the
            // entry tells them apart.
            "file" => files.push(entry),
            // A directory named *.yaml: skipped, as `guard run --recipes DIR` does.
            "dir" => {}
            "symlink" => {
                return Err(format!(
                    "{:?} is a symbolic link; links in a recipes directory are not followed",
                    entry.path
                ))
            }
            "submodule" => return Err(format!("{:?} is a submodule", entry.path)),
            other => return Err(format!("{:?} is of type {other:?}", entry.path)),
        }
    }
    if files.len() > MAX_DIR_FILES {
        return Err(format!(
            "the directory holds {} *.yml / *.yaml files, over the limit of {MAX_DIR_FILES}",
            files.len()
        ));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let mut read = Vec::with_capacity(files.len());
    for entry in files {
        let entry_segments: Vec<&str> = entry.path.split('/').collect();
        let found = get_content(crab, at, &entry_segments)
            .await?
            .ok_or_else(|| format!("{:?} is listed but not found", entry.path))?;
        if found.kind != "file" {
            // A submodule or a link that does not resolve to a file.
            return Err(not_a_file(&entry.path, &found));
        }
        if !found.sha.eq_ignore_ascii_case(&entry.sha) {
            return Err(format!(
                "{:?} is listed with blob id {:?} but read with {:?}",
                entry.path, entry.sha, found.sha
            ));
        }
        let bytes = file_bytes(crab, at, &found).await?;
        read.push((entry.path, bytes));
    }
    Ok(read)
}

/// Named as a recipe file, as `guard run --recipes DIR` selects them.
fn is_yaml_name(name: &str) -> bool {
    matches!(
        Path::new(name).extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn not_a_file(path: &str, found: &Content) -> String {
    match found.kind.as_str() {
        "symlink" => format!(
            "{path:?} is a symbolic link to {:?}, which is not a file of the repository; \
             it is not followed",
            found.target.as_deref().unwrap_or("")
        ),
        "submodule" => format!("{path:?} is a submodule"),
        other => format!("{path:?} is of type {other:?}, not a file"),
    }
}

/// A file's bytes from its contents answer (or its blob, when GitHub left the content out),
/// verified against its blob id.
async fn file_bytes(crab: &Octocrab, at: &RepoAt, found: &Content) -> Result<Vec<u8>, String> {
    if found.kind != "file" {
        return Err(not_a_file(&found.path, found));
    }
    let path = &found.path;
    if found.size > MAX_FILE_BYTES {
        return Err(too_large(path, found.size));
    }
    let blob_id = found.sha.to_ascii_lowercase();
    if !is_object_id(&blob_id) {
        return Err(format!("{path:?} comes with blob id {:?}", found.sha));
    }
    let content = found.content.as_deref().unwrap_or("");
    let bytes = match found.encoding.as_deref() {
        Some("base64") => decode_base64(content).map_err(|e| format!("{path:?}: {e}"))?,
        // Over 1 MB GitHub sends no content; the blob has it.
        Some("none") | None if content.is_empty() => {
            let route = format!("/repos/{}/{}/git/blobs/{blob_id}", at.owner, at.repo);
            let blob: Blob = get(crab, at, &route, false)
                .await?
                .ok_or_else(|| format!("the blob {blob_id} of {path:?} is not found"))?;
            if blob.encoding != "base64" {
                return Err(format!(
                    "the blob of {path:?} comes in encoding {:?}",
                    blob.encoding
                ));
            }
            decode_base64(&blob.content).map_err(|e| format!("the blob of {path:?}: {e}"))?
        }
        other => {
            return Err(format!(
                "{path:?} comes in encoding {:?}",
                other.unwrap_or("")
            ))
        }
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    let hashed = git_blob_id(&bytes);
    if hashed != blob_id {
        return Err(format!(
            "the content GitHub sent for {path:?} does not match its blob id {blob_id} (it \
             hashes to {hashed}); refused"
        ));
    }
    Ok(bytes)
}

fn too_large(path: &str, size: u64) -> String {
    format!("{path:?} is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes (1 MiB) per file")
}

/// GitHub's base64 comes in lines.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("the content is not valid base64: {e}"))
}

/// git's id of a blob with these bytes: SHA-1 of `blob <length>\0` followed by the bytes.
fn git_blob_id(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()));
    hasher.update(bytes);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /repos/{owner}/{repo}/contents/{path}?ref={sha}`; `None` on 404.
async fn get_content(
    crab: &Octocrab,
    at: &RepoAt,
    segments: &[&str],
) -> Result<Option<Content>, String> {
    let encoded: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
    let route = format!(
        "/repos/{}/{}/contents/{}",
        at.owner,
        at.repo,
        encoded.join("/")
    );
    match get::<serde_json::Value>(crab, at, &route, true).await? {
        Some(answer) => content_from(answer)
            .map(Some)
            .map_err(|e| format!("GET {route} answered what is not a contents object: {e}")),
        None => Ok(None),
    }
}

/// A contents answer in either shape: the object media type's, or the default one's, where a
/// directory is a bare array of entries (a GitHub Enterprise Server that predates the object
/// media type answers so).
fn content_from(answer: serde_json::Value) -> Result<Content, serde_json::Error> {
    if answer.is_array() {
        Ok(Content {
            kind: "dir".to_string(),
            entries: Some(serde_json::from_value(answer)?),
            ..Content::default()
        })
    } else {
        serde_json::from_value(answer)
    }
}

/// A GET of `route` with the object media type, with `?ref={sha}` when `at_commit`; `None` on a
/// 404 that says the path is not there (a 404 because the commit is not found is an error).
async fn get<T: DeserializeOwned>(
    crab: &Octocrab,
    at: &RepoAt,
    route: &str,
    at_commit: bool,
) -> Result<Option<T>, String> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(OBJECT_MEDIA_TYPE));
    let query = [("ref", at.sha.as_str())];
    let query = at_commit.then_some(&query[..]);
    // The commit is named at the start of the message already.
    let request = format!("GET {route}");
    match crab.get_with_headers(route, query, Some(headers)).await {
        Ok(answer) => Ok(Some(answer)),
        Err(octocrab::Error::GitHub { source, .. }) => {
            let status = source.status_code.as_u16();
            let message = api::one_line(&api::scrub(&source.message, &at.token));
            let no_commit = message.starts_with("No commit found");
            if status == 404 && !no_commit {
                return Ok(None);
            }
            // A rate limit or a blob over 100 MB is a 403 too, which no permission changes.
            let lower = message.to_ascii_lowercase();
            let hint = if lower.contains("rate limit") || lower.contains("too large") {
                ""
            } else {
                match status {
                    401 => "; the token was not accepted (input `github-token`)",
                    403 => "; the token needs `contents: read` (permissions of the job)",
                    404 => "; the commit is not in the repository",
                    _ => "",
                }
            };
            Err(format!(
                "{request} answered HTTP {status} ({message}){hint}"
            ))
        }
        Err(e) => Err(format!(
            "{request} to {} failed: {}",
            at.api_url,
            api::one_line(&api::scrub(&api::error_chain(&e), &at.token))
        )),
    }
}

/// A path segment as it goes into a URL: every byte but the unreserved characters of RFC 3986
/// percent-encoded, so that a space, `#`, `?` or `%` in a file name stays part of the path.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// `git hash-object` of `bytes`: the reference the blob id is checked against.
    fn git_hash_object(bytes: &[u8]) -> String {
        let mut child = Command::new("git")
            .args(["hash-object", "--no-filters", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git is installed");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn blob_id_is_git_hash_object() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cases: [&[u8]; 5] = [
            b"",
            b"hello\n",
            b"allow:\n  - recipe: webserver_exec\n    reason: integration tests\n",
            b"\0binary\xff\xfe\r\n",
            &big,
        ];
        for bytes in cases {
            assert_eq!(git_blob_id(bytes), git_hash_object(bytes), "{bytes:?}");
        }
        // Known ids, so that the test means something where git is not the reference.
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn repository_paths_are_checked() {
        assert_eq!(
            repo_path(".github/webserver-exec-guard.yml").unwrap(),
            [".github", "webserver-exec-guard.yml"]
        );
        assert_eq!(repo_path("recipes/").unwrap(), ["recipes"]);
        assert_eq!(repo_path("a b/#c").unwrap(), ["a b", "#c"]);
        assert_eq!(repo_path("..x/y..").unwrap(), ["..x", "y.."]);
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a\0b",
            "//a",
        ] {
            assert!(repo_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("my file #1.yaml"), "my%20file%20%231.yaml");
        assert_eq!(encode_segment("a?b%c&d=e"), "a%3Fb%25c%26d%3De");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn recipe_names_are_those_of_the_local_loader() {
        for yes in ["a.yml", "a.yaml", "my file #1.yaml", "x.y.yml"] {
            assert!(is_yaml_name(yes), "{yes}");
        }
        for no in ["a.YML", "README.md", ".yml", "yml", "a.yml.bak"] {
            assert!(!is_yaml_name(no), "{no}");
        }
    }

    #[test]
    fn directory_answers_come_in_either_shape() {
        let entry = serde_json::json!({"type": "file", "name": "a.yml", "path": "r/a.yml",
                                       "sha": "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", "size": 0});
        let object = content_from(serde_json::json!({"type": "dir", "entries": [entry]})).unwrap();
        let array = content_from(serde_json::json!([entry])).unwrap();
        for dir in [object, array] {
            assert_eq!(dir.kind, "dir");
            let entries = dir.entries.unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].path, "r/a.yml");
        }
        assert!(content_from(serde_json::json!({"message": "no type"})).is_err());
    }

    #[test]
    fn object_ids_are_full_hex() {
        assert!(is_object_id("3dca65fa3e8d4b3da3f3d056c59aee1c50f41390"));
        assert!(!is_object_id(&"a".repeat(64)));
        assert!(!is_object_id("main"));
        assert!(!is_object_id("3dca65f"));
        assert!(!is_object_id("3dca65fa3e8d4b3da3f3d056c59aee1c50f4139g"));
    }
}
