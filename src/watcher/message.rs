//! The messages the watcher's commands hand to an unprivileged caller across the privilege
//! boundary (the Action's steps run `sudo -n guard start|stop` and read one line of stdout):
//! one typed, versioned JSON object per line, written and read only here.
//!
//! ```json
//! {"v":1,"type":"started","pid":4242,"trace":"/run/webserver-exec-guard/trace.jsonl","attached":[1000]}
//! {"v":1,"type":"stopped","stopped":"died","last_seen":"2026-12-02T10:00:00.000000Z","trace":"/run/…/trace-77.jsonl"}
//! {"v":1,"type":"error","message":"the watcher is already running (pid 4242)"}
//! ```
//! A reader refuses another version instead of guessing at its fields.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The version written in every message (`v`).
pub const VERSION: u32 = 1;

/// How the watcher ended when it was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// It sealed its trace on our request.
    Sealed,
    /// It had already sealed and exited.
    AlreadySealed,
    /// It was gone without sealing (killed).
    Died,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// `guard start --message`: the watcher records.
    Started {
        pid: u32,
        trace: PathBuf,
        attached: Vec<u32>,
        /// For an Action job (`guard start --job`): the watcher's start time (field 22 of
        /// `/proc/PID/stat`), its channel's name and the sealed guard binary the post step runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<StartedJob>,
    },
    /// `guard stop --export`: the watcher is stopped and its sealed trace copied to `trace`.
    Stopped {
        stopped: StopKind,
        /// When a watcher that died was last seen alive.
        last_seen: Option<String>,
        trace: PathBuf,
    },
    /// The command failed; `message` says why, as the command line would.
    Error { message: String },
    /// On the watcher's channel: the request of a verified step is taken; the verdict follows.
    Accepted,
    /// On the watcher's channel: the verdict, computed by the watcher (root) from its sealed
    /// trace and sealed policy, with everything the post step shows.
    Verdict(Box<Verdict>),
}

/// What the post step needs to reach the watcher of its job, saved by `pre`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartedJob {
    pub starttime: u64,
    pub channel: String,
    pub guard: PathBuf,
}

/// What the post step shows and sends, all computed by the watcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub verdict: crate::check::Verdict,
    /// The post step's exit status.
    pub status: u8,
    pub failing: usize,
    /// Workflow commands (annotations), one per line, escaped.
    pub annotations: Vec<String>,
    /// The job summary (Markdown).
    pub summary: String,
    /// The JSON report (v1).
    pub report: String,
    /// The SARIF log, when the `sarif` input asked for one: (path, content).
    pub sarif: Option<(String, String)>,
    /// Pull request feedback, when there is a pull request to send it to.
    pub feedback: Option<Feedback>,
}

/// Pull request feedback as `pre` saw the event, and the API settings `pre` had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub head_sha: String,
    /// The sticky comment's body, when the `comment` input is on.
    pub comment: Option<String>,
    pub check_run: Option<(
        crate::report::github::CheckRunOutput,
        crate::report::github::Conclusion,
    )>,
    /// Proxy and certificate settings of `pre`'s environment.
    pub api_env: std::collections::BTreeMap<String, String>,
}

/// What a step asks the watcher on its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Stop recording and give the verdict (the post step).
    Verdict,
}

#[derive(Serialize, Deserialize)]
struct RequestEnvelope {
    v: u32,
    #[serde(flatten)]
    request: Request,
}

impl Request {
    pub fn to_line(self) -> String {
        serde_json::to_string(&RequestEnvelope {
            v: VERSION,
            request: self,
        })
        .expect("a request always serialises")
    }

    pub fn parse(text: &[u8]) -> Result<Request, String> {
        let e: RequestEnvelope = serde_json::from_slice(text.trim_ascii())
            .map_err(|e| format!("not a request ({e}): {}", shown(text)))?;
        if e.v != VERSION {
            return Err(format!(
                "request version {} (this guard reads {VERSION})",
                e.v
            ));
        }
        Ok(e.request)
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    message: Message,
}

impl Message {
    /// The message as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        let envelope = Envelope {
            v: VERSION,
            message: self.clone(),
        };
        serde_json::to_string(&envelope).expect("a message always serialises")
    }

    /// The message in `text` (one line; surrounding whitespace ignored).
    pub fn parse(text: &[u8]) -> Result<Message, String> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let text = text.trim_ascii();
        let version: Version = serde_json::from_slice(text)
            .map_err(|e| format!("not a watcher message ({e}): {}", shown(text)))?;
        if version.v != VERSION {
            return Err(format!(
                "watcher message version {} (this guard reads {VERSION})",
                version.v
            ));
        }
        let envelope: Envelope = serde_json::from_slice(text)
            .map_err(|e| format!("not a watcher message ({e}): {}", shown(text)))?;
        Ok(envelope.message)
    }
}

fn shown(text: &[u8]) -> String {
    crate::escape::terminal(&text[..text.len().min(200)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_one_line() {
        let all = [
            Message::Started {
                pid: 42,
                trace: "/run/w/trace.jsonl".into(),
                attached: vec![7],
                job: None,
            },
            Message::Started {
                pid: 42,
                trace: "/run/w/trace.jsonl".into(),
                attached: vec![7],
                job: Some(StartedJob {
                    starttime: 9,
                    channel: "webserver-exec-guard/1/ab".into(),
                    guard: "/run/webserver-exec-guard-bin/guard".into(),
                }),
            },
            Message::Accepted,
            Message::Stopped {
                stopped: StopKind::Died,
                last_seen: Some("2026-12-02T10:00:00.000000Z".into()),
                trace: "/run/x/t.jsonl".into(),
            },
            Message::Error {
                message: "no\nsudo".into(),
            },
        ];
        for m in all {
            let line = m.to_line();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("{\"v\":1,"), "{line}");
            assert_eq!(Message::parse(line.as_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn another_version_or_shape_is_refused() {
        let e = Message::parse(br#"{"v":2,"type":"error","message":"x"}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = Message::parse(br#"{"v":1,"type":"stopped"}"#).unwrap_err();
        assert!(e.contains("not a watcher message"), "{e}");
        let e = Message::parse(b"guard: error: \x1b[2J").unwrap_err();
        assert!(e.contains("\\x1b"), "{e}");
    }
}
