//! GitHub REST client for pull request feedback: finds the pull request in the Actions
//! environment, then sends the sticky comment and the check run that [`crate::github::pr`] builds,
//! through octocrab. It never fails its caller: every problem comes back as one warning per
//! feature, so a read-only token (forked pull requests, Dependabot) or an API outage never hides
//! the verdict, which is in the job summary and the annotations anyway.
//!
//! Requests made (paths relative to `GITHUB_API_URL`, which may carry a path such as `/api/v3` on
//! GitHub Enterprise Server):
//! - `GET /user` — who we are, so that only our own marker comment is updated (installation
//!   tokens such as `GITHUB_TOKEN` get 403 here; then a marker comment by a bot counts as ours);
//! - `GET /repos/{owner}/{repo}/issues/{number}/comments?per_page=100`, following the `Link`
//!   header through all pages;
//! - `PATCH /repos/{owner}/{repo}/issues/comments/{id}` or `POST
//!   /repos/{owner}/{repo}/issues/{number}/comments`;
//! - `POST /repos/{owner}/{repo}/check-runs` with the first 50 annotations, then `PATCH
//!   /repos/{owner}/{repo}/check-runs/{id}` for each further 50 (GitHub appends them).
//!
//! The token never appears in a warning: every message is scrubbed of it before it is returned.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use octocrab::{Octocrab, Page};
use serde::Deserialize;

use crate::github::pr::{self, CheckRunOutput, Conclusion};

/// The public GitHub API, used when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The most a feature (comment, check run) may take, retries included, so that the post step
/// never hangs on a slow API.
const FEATURE_DEADLINE: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of 100 comments read at most while looking for the sticky comment.
const MAX_COMMENT_PAGES: usize = 100;
/// Longest error detail quoted in a warning, in characters.
const MAX_DETAIL_CHARS: usize = 300;

const STILL_THERE: &str = "the results are still in the job summary and the annotations";

/// Where pull request feedback goes, read from the Actions environment.
#[derive(Clone, PartialEq, Eq)]
pub struct PrContext {
    /// Without a trailing `/`; may carry a path (`https://ghe.example.com/api/v3`).
    pub api_url: String,
    pub token: String,
    pub owner: String,
    pub repo: String,
    pub pr_number: u64,
    /// The pull request's head commit (not `GITHUB_SHA`, which is the merge commit).
    pub head_sha: String,
}

/// Never prints the token.
impl fmt::Debug for PrContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrContext")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("pr_number", &self.pr_number)
            .field("head_sha", &self.head_sha)
            .finish()
    }
}

impl PrContext {
    /// The pull request of this workflow run, if feedback can be sent to one.
    ///
    /// `Ok(None)` when the event is not `pull_request` / `pull_request_target`, or there is no
    /// token (input `github-token`, i.e. `INPUT_GITHUB-TOKEN`, else `GITHUB_TOKEN`). `Err` when it
    /// is a pull request event but the payload or `GITHUB_REPOSITORY` cannot be used.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<PrContext>, String> {
        let non_empty = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let event = non_empty("GITHUB_EVENT_NAME").unwrap_or_default();
        if event != "pull_request" && event != "pull_request_target" {
            return Ok(None);
        }
        let Some(token) = non_empty("INPUT_GITHUB-TOKEN").or_else(|| non_empty("GITHUB_TOKEN"))
        else {
            return Ok(None);
        };

        let path = non_empty("GITHUB_EVENT_PATH")
            .ok_or_else(|| format!("{event} event without GITHUB_EVENT_PATH"))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the event payload {path:?}: {e}"))?;
        let payload: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the event payload {path:?} is not JSON: {e}"))?;
        let pull = &payload["pull_request"];
        let pr_number = payload["number"]
            .as_u64()
            .or_else(|| pull["number"].as_u64())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("no pull request number in the event payload {path:?}"))?;
        let head_sha = pull["head"]["sha"]
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("no pull_request.head.sha in the event payload {path:?}"))?
            .to_string();

        let full_name = non_empty("GITHUB_REPOSITORY")
            .or_else(|| {
                payload["repository"]["full_name"]
                    .as_str()
                    .map(String::from)
            })
            .ok_or("GITHUB_REPOSITORY is not set")?;
        let (owner, repo) = full_name
            .split_once('/')
            .filter(|(o, r)| is_name(o) && is_name(r))
            .ok_or_else(|| format!("GITHUB_REPOSITORY {full_name:?} is not owner/repo"))?;

        let api_url = non_empty("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string());
        Ok(Some(PrContext {
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            owner: owner.to_string(),
            repo: repo.to_string(),
            pr_number,
            head_sha,
        }))
    }
}

/// An owner or repository name as GitHub allows them; anything else would change the API path.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Sends the sticky comment (when `comment` is given) and the check run (when `check_run` is
/// given) to the pull request. Returns warnings — at most one per feature — and never panics.
///
/// `comment` is the comment's body as [`pr::comment_body`] builds it; a text without
/// [`pr::MARKER`] is passed through `comment_body` first.
pub fn publish(
    ctx: &PrContext,
    comment: Option<&str>,
    check_run: Option<(&CheckRunOutput, Conclusion)>,
) -> Vec<String> {
    let mut features = Vec::new();
    if comment.is_some() {
        features.push(Feature::Comment);
    }
    if check_run.is_some() {
        features.push(Feature::CheckRun);
    }
    if features.is_empty() {
        return Vec::new();
    }

    let all_failed = |why: &str| -> Vec<String> {
        features
            .iter()
            .map(|f| format!("{}: {why}; {STILL_THERE}", f.not_done()))
            .collect()
    };
    let warnings = if let Err(why) = check_token(&ctx.token) {
        all_failed(why)
    } else {
        let run =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_features(ctx, comment, check_run)));
        match run {
            Ok(Ok(warnings)) => warnings,
            Ok(Err(why)) => all_failed(&why),
            Err(_) => all_failed("the GitHub client failed unexpectedly"),
        }
    };
    warnings
        .into_iter()
        .map(|w| scrub(&w, &ctx.token))
        .collect()
}

/// A token must be a valid HTTP header value; octocrab panics otherwise.
pub(super) fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        Err("no token")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Err("the token contains characters that are not allowed in an HTTP header")
    } else {
        Ok(())
    }
}

fn run_features(
    ctx: &PrContext,
    comment: Option<&str>,
    check_run: Option<(&CheckRunOutput, Conclusion)>,
) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        // octocrab's client needs the runtime to exist while it is built.
        let crab = client(&ctx.api_url, &ctx.token)?;
        let mut warnings = Vec::new();
        if let Some(body) = comment {
            let body = if body.contains(pr::MARKER) {
                body.to_string()
            } else {
                pr::comment_body(body)
            };
            let done = within_deadline(sticky_comment(&crab, ctx, &body)).await;
            if let Err(failure) = done {
                warnings.push(failure.warning(Feature::Comment, ctx));
            }
        }
        if let Some((output, conclusion)) = check_run {
            let done = within_deadline(create_check_run(&crab, ctx, output, conclusion)).await;
            if let Err(failure) = done {
                warnings.push(failure.warning(Feature::CheckRun, ctx));
            }
        }
        Ok(warnings)
    })
}

/// The client every request to the API goes through: the token, the timeouts of one request,
/// and `api_url` as the base of every route. Call it inside the runtime that will drive it.
pub(super) fn client(api_url: &str, token: &str) -> Result<Octocrab, String> {
    Octocrab::builder()
        .personal_token(token.to_string())
        .set_connect_timeout(Some(CONNECT_TIMEOUT))
        .set_read_timeout(Some(READ_WRITE_TIMEOUT))
        .set_write_timeout(Some(READ_WRITE_TIMEOUT))
        .base_uri(api_url)
        .and_then(|b| b.build())
        .map_err(|e| format!("cannot use the API URL {api_url:?}: {}", error_chain(&e)))
}

async fn within_deadline<F>(work: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), Failure>>,
{
    match tokio::time::timeout(FEATURE_DEADLINE, work).await {
        Ok(done) => done,
        Err(_) => Err(Failure {
            request: None,
            kind: FailureKind::Timeout,
            partial: None,
        }),
    }
}

/// What we read of an issue comment; everything else GitHub sends is ignored, so that fields a
/// GitHub Enterprise Server version lacks (or a deleted author, `user: null`) do no harm.
#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<Account>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// The id of what a create call made.
#[derive(Deserialize)]
struct Created {
    id: u64,
}

/// Updates our marker comment in place, or creates it.
async fn sticky_comment(crab: &Octocrab, ctx: &PrContext, body: &str) -> Result<(), Failure> {
    let (o, r, n) = (&ctx.owner, &ctx.repo, ctx.pr_number);
    // Who we are: a personal token can tell; an installation token (GITHUB_TOKEN, a GitHub App)
    // gets 403, and then comments by bots count as ours.
    let me: Option<Account> = crab.get("/user", None::<&()>).await.ok();

    let list = format!("/repos/{o}/{r}/issues/{n}/comments");
    let request = || Some(format!("GET {list}"));
    let mut page: Page<IssueComment> = crab
        .get(&list, Some(&[("per_page", 100)]))
        .await
        .map_err(|e| Failure::from_octocrab(request(), e))?;
    let mut ours = None;
    for _ in 0..MAX_COMMENT_PAGES {
        ours = page
            .items
            .iter()
            .find(|c| is_our_sticky(c, me.as_ref()))
            .map(|c| c.id);
        if ours.is_some() {
            break;
        }
        match crab.get_page::<IssueComment>(&page.next).await {
            Ok(Some(next)) => page = next,
            Ok(None) => break,
            Err(e) => return Err(Failure::from_octocrab(request(), e)),
        }
    }

    let payload = serde_json::json!({ "body": body });
    match ours {
        Some(id) => {
            let route = format!("/repos/{o}/{r}/issues/comments/{id}");
            crab.patch::<Created, _, _>(&route, Some(&payload))
                .await
                .map_err(|e| Failure::from_octocrab(Some(format!("PATCH {route}")), e))?;
        }
        None => {
            crab.post::<_, Created>(&list, Some(&payload))
                .await
                .map_err(|e| Failure::from_octocrab(Some(format!("POST {list}")), e))?;
        }
    }
    Ok(())
}

/// A comment is our sticky one when it carries the marker and we wrote it: the same login when we
/// know ours, else a bot (what `GITHUB_TOKEN` and GitHub Apps post as). A marker pasted by someone
/// else into their own comment is left alone.
fn is_our_sticky(c: &IssueComment, me: Option<&Account>) -> bool {
    let marked = c.body.as_deref().is_some_and(|b| b.contains(pr::MARKER));
    let Some(author) = &c.user else {
        return false;
    };
    marked
        && match me {
            Some(me) => author.login == me.login,
            None => author.kind == "Bot",
        }
}

/// Creates the completed check run with the first 50 annotations and appends the rest, 50 per
/// update.
async fn create_check_run(
    crab: &Octocrab,
    ctx: &PrContext,
    output: &CheckRunOutput,
    conclusion: Conclusion,
) -> Result<(), Failure> {
    let (o, r) = (&ctx.owner, &ctx.repo);
    let route = format!("/repos/{o}/{r}/check-runs");
    let body = pr::check_run_create_body(&ctx.head_sha, output, conclusion);
    let created: Created = crab
        .post(&route, Some(&body))
        .await
        .map_err(|e| Failure::from_octocrab(Some(format!("POST {route}")), e))?;

    let batches = pr::batches(&output.annotations);
    let total = output.annotations.len();
    let mut sent = batches.first().map_or(0, |b| b.len());
    let update = format!("/repos/{o}/{r}/check-runs/{}", created.id);
    for batch in batches.iter().skip(1) {
        let body = pr::check_run_update_body(output, batch);
        crab.patch::<Created, _, _>(&update, Some(&body))
            .await
            .map_err(|e| {
                let mut failure = Failure::from_octocrab(Some(format!("PATCH {update}")), e);
                failure.partial = Some(format!(
                    "the check run was created with {sent} of {total} annotations"
                ));
                failure
            })?;
        sent += batch.len();
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feature {
    Comment,
    CheckRun,
}

impl Feature {
    fn not_done(self) -> &'static str {
        match self {
            Feature::Comment => "pull request comment not posted",
            Feature::CheckRun => "check run not created",
        }
    }

    fn permission(self) -> &'static str {
        match self {
            Feature::Comment => "pull-requests: write",
            Feature::CheckRun => "checks: write",
        }
    }
}

/// Why a feature could not be completed.
struct Failure {
    /// `METHOD /path` of the request that failed.
    request: Option<String>,
    kind: FailureKind,
    /// What was done before the failure, if anything.
    partial: Option<String>,
}

enum FailureKind {
    /// GitHub answered with an error status.
    Api { status: u16, message: String },
    /// No answer: connection, TLS, timeout of a request, a response we cannot read.
    Transport(String),
    /// The feature took longer than [`FEATURE_DEADLINE`].
    Timeout,
}

impl Failure {
    fn from_octocrab(request: Option<String>, e: octocrab::Error) -> Failure {
        let kind = match &e {
            octocrab::Error::GitHub { source, .. } => FailureKind::Api {
                status: source.status_code.as_u16(),
                message: source.message.clone(),
            },
            other => FailureKind::Transport(error_chain(other)),
        };
        Failure {
            request,
            kind,
            partial: None,
        }
    }

    /// One line for the job log: what was not done, why, what to change, and that the verdict is
    /// not lost.
    fn warning(&self, feature: Feature, ctx: &PrContext) -> String {
        let mut what = match &self.kind {
            FailureKind::Api { status, message } => {
                let message = one_line(&scrub(message, &ctx.token));
                match &self.request {
                    Some(req) => format!("{req} answered HTTP {status} ({message})"),
                    None => format!("HTTP {status} ({message})"),
                }
            }
            FailureKind::Transport(detail) => {
                let detail = one_line(&scrub(detail, &ctx.token));
                match &self.request {
                    Some(req) => format!("{req} to {} failed: {detail}", ctx.api_url),
                    None => format!("{} failed: {detail}", ctx.api_url),
                }
            }
            FailureKind::Timeout => format!(
                "no answer from {} within {} s",
                ctx.api_url,
                FEATURE_DEADLINE.as_secs()
            ),
        };
        if let Some(partial) = &self.partial {
            what = format!("{partial}; {what}");
        }
        let hint = match self.kind {
            FailureKind::Api {
                status: 403 | 404, ..
            } => format!(
                "; the token needs `{}` (pull requests from forks and from Dependabot only get \
                 a read-only token)",
                feature.permission()
            ),
            FailureKind::Api { status: 401, .. } => {
                "; the token was not accepted (input `github-token`)".to_string()
            }
            _ => String::new(),
        };
        format!("{}: {what}{hint}; {STILL_THERE}", feature.not_done())
    }
}

/// An error and its causes, `: `-separated, without repeating a cause already quoted.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// `s` on one line and at most [`MAX_DETAIL_CHARS`] characters (an error page can be long).
pub(super) fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_DETAIL_CHARS {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_DETAIL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// `s` with every occurrence of the token replaced.
pub(super) fn scrub(s: &str, token: &str) -> String {
    if token.is_empty() {
        s.to_string()
    } else {
        s.replace(token, "***")
    }
}
