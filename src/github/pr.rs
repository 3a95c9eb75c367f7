//! Pull request feedback as GitHub API request bodies: the sticky comment and the check run with
//! its annotations. Pure: no I/O; [`crate::github::api`] sends what this module builds.
//!
//! Limits that shape the bodies (GitHub REST API):
//! - an issue comment holds at most 65,536 characters;
//! - a check run's `output.summary` (and `text`) at most 65,535 characters;
//! - at most 50 annotations per request: the first 50 go with "create a check run", each further
//!   batch of 50 with one "update a check run", which appends them;
//! - an annotation's `title` at most 255 characters, its `message` at most 64 KB.

use serde_json::{json, Map, Value};

/// Hidden marker that identifies our sticky comment among a pull request's comments. HTML
/// comments are not rendered, so it is invisible on the pull request page.
pub const MARKER: &str = "<!-- webserver-exec-guard:sticky -->";

/// The name of the check run (shown in the pull request's checks list).
pub const CHECK_RUN_NAME: &str = "webserver-exec-guard";

/// The longest issue comment GitHub accepts, in characters.
pub const COMMENT_MAX_CHARS: usize = 65_536;

/// The longest check run `output.summary` GitHub accepts, in characters.
pub const SUMMARY_MAX_CHARS: usize = 65_535;

/// Annotations GitHub accepts per check run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

/// The longest annotation title GitHub accepts, in characters.
pub const ANNOTATION_TITLE_MAX_CHARS: usize = 255;

/// The longest annotation message we send, in bytes (GitHub: "the maximum size is 64 KB").
pub const ANNOTATION_MESSAGE_MAX_BYTES: usize = 64_000;

const TRUNCATED_COMMENT_NOTE: &str = "\n\n---\n**Truncated:** this comment reached GitHub's limit \
of 65,536 characters. The full report is in the job summary of this workflow run.";

const TRUNCATED_SUMMARY_NOTE: &str = "\n\n---\n**Truncated:** GitHub's limit for a check run \
summary is 65,535 characters. The full report is in the job summary of this workflow run.";

/// The sticky comment's body: the marker, then the summary, cut to GitHub's comment limit with a
/// note when too long. The marker is always whole and first.
pub fn comment_body(summary_markdown: &str) -> String {
    let head = format!("{MARKER}\n");
    let budget = COMMENT_MAX_CHARS - head.chars().count();
    format!(
        "{head}{}",
        truncate_markdown(summary_markdown, budget, TRUNCATED_COMMENT_NOTE)
    )
}

pub use crate::report::github::{AnnotationLevel, CheckAnnotation, CheckRunOutput, Conclusion};

/// The annotations in request-sized batches of at most 50 (none for no annotations).
pub fn batches(a: &[CheckAnnotation]) -> Vec<&[CheckAnnotation]> {
    a.chunks(ANNOTATIONS_PER_REQUEST).collect()
}

/// Body of `POST /repos/{owner}/{repo}/check-runs`: a completed check run with its conclusion and
/// the first batch of annotations. Further batches go with [`check_run_update_body`].
pub fn check_run_create_body(
    head_sha: &str,
    output: &CheckRunOutput,
    conclusion: Conclusion,
) -> Value {
    let first = batches(&output.annotations)
        .into_iter()
        .next()
        .unwrap_or(&[]);
    json!({
        "name": CHECK_RUN_NAME,
        "head_sha": head_sha,
        "status": "completed",
        "conclusion": conclusion,
        "output": output_json(output, first),
    })
}

/// Body of `PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}` that appends one more batch of
/// annotations (title and summary are sent again: GitHub requires them with every `output`).
pub fn check_run_update_body(output: &CheckRunOutput, batch: &[CheckAnnotation]) -> Value {
    json!({ "output": output_json(output, batch) })
}

fn output_json(output: &CheckRunOutput, batch: &[CheckAnnotation]) -> Value {
    let title = if output.title.trim().is_empty() {
        CHECK_RUN_NAME.to_string()
    } else {
        truncate_chars(&output.title, ANNOTATION_TITLE_MAX_CHARS)
    };
    let mut out = Map::new();
    out.insert("title".into(), title.into());
    out.insert(
        "summary".into(),
        truncate_markdown(&output.summary, SUMMARY_MAX_CHARS, TRUNCATED_SUMMARY_NOTE).into(),
    );
    if !batch.is_empty() {
        let annotations = batch.iter().map(annotation_json).collect::<Vec<_>>();
        out.insert("annotations".into(), annotations.into());
    }
    Value::Object(out)
}

/// One annotation as GitHub takes it; lines are made valid (1-based, end ≥ start) and the title
/// and message cut to GitHub's limits.
fn annotation_json(a: &CheckAnnotation) -> Value {
    let start = a.start_line.max(1);
    let end = a.end_line.max(start);
    let message = if a.message.is_empty() {
        a.title.clone()
    } else {
        a.message.clone()
    };
    let mut v = Map::new();
    v.insert("path".into(), a.path.clone().into());
    v.insert("start_line".into(), start.into());
    v.insert("end_line".into(), end.into());
    v.insert("annotation_level".into(), json!(a.level));
    v.insert(
        "message".into(),
        truncate_bytes(&message, ANNOTATION_MESSAGE_MAX_BYTES).into(),
    );
    if !a.title.is_empty() {
        v.insert(
            "title".into(),
            truncate_chars(&a.title, ANNOTATION_TITLE_MAX_CHARS).into(),
        );
    }
    Value::Object(v)
}

/// `text` when it has at most `max` characters; otherwise a prefix that ends at a line break where
/// possible, an open code fence and an open `<details>` closed (so that the note is not hidden
/// in a collapsed section), then `note`, all within `max` characters.
fn truncate_markdown(text: &str, max: usize, note: &str) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    const FENCE_CLOSE: &str = "\n```";
    // Our summaries do not nest `<details>`; text from a build never has a raw one (escaped).
    const DETAILS_CLOSE: &str = "\n\n</details>";
    let budget = max.saturating_sub(note.chars().count() + FENCE_CLOSE.len() + DETAILS_CLOSE.len());
    let cut = text
        .char_indices()
        .nth(budget)
        .map_or(text.len(), |(i, _)| i);
    let mut kept = &text[..cut];
    // End at a line break unless that would throw away more than half of what fits.
    if let Some(nl) = kept.rfind('\n') {
        if nl >= kept.len() / 2 {
            kept = &kept[..nl];
        }
    }
    let fences = kept
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    let mut out = String::with_capacity(kept.len() + FENCE_CLOSE.len() + note.len());
    out.push_str(kept);
    if fences % 2 == 1 {
        out.push_str(FENCE_CLOSE);
    }
    let open = kept.matches("<details>").count();
    let closed = kept.matches("</details>").count();
    for _ in closed..open {
        out.push_str(DETAILS_CLOSE);
    }
    out.push_str(note);
    out
}

/// At most `max` characters of `s`, the last one `…` when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// At most `max` bytes of `s`, cut at a character boundary, the last one `…` when cut.
fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_closes_an_open_details_before_the_note() {
        let text = format!(
            "## verdict\n\n<details><summary>Finding 1</summary>\n\n{}\n</details>\n",
            "x".repeat(500)
        );
        let cut = truncate_markdown(&text, 300, "\n\n**Truncated**");
        assert!(cut.chars().count() <= 300, "{}", cut.chars().count());
        assert_eq!(cut.matches("<details>").count(), 1);
        assert_eq!(cut.matches("</details>").count(), 1);
        assert!(cut.ends_with("</details>\n\n**Truncated**"), "{cut}");
    }
}
