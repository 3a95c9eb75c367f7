//! The local stand-in for the GitHub REST API, tests/js/mock_github.js, run as a child process:
//! it validates every request against GitHub's official OpenAPI description (npm
//! `@octokit/openapi`, installed by `npm ci --prefix tests/js`) and records what it was asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The token the mock accepts.
pub const TOKEN: &str = "ghs_testTOKEN0123456789abcdefSECRET";
/// Time the mock may take to load the 70 MB OpenAPI description on a busy machine.
const MOCK_START_TIMEOUT: Duration = Duration::from_secs(120);

/// The mock GitHub API, a `node` child process; killed when dropped.
pub struct MockGitHub {
    child: Child,
    port: u16,
    prefix: String,
    // Held open: the mock exits when its stdin closes, so a crashed test leaves nothing behind.
    _stdin: ChildStdin,
}

impl MockGitHub {
    /// Starts the mock with [`TOKEN`] and `args` (see the usage in mock_github.js).
    pub fn start(args: &[&str]) -> MockGitHub {
        let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
        assert!(
            js.join("node_modules/@octokit/openapi").is_dir()
                && js.join("node_modules/ajv").is_dir(),
            "tests/js/node_modules is missing: run `npm ci --prefix tests/js`"
        );
        let mut child = Command::new("node")
            .arg(js.join("mock_github.js"))
            .args(["--token", TOKEN])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run `node` (Node.js is needed for the GitHub API tests)");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(MOCK_START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mock_github.js did not print its port within {MOCK_START_TIMEOUT:?}");
            }
        };
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mock_github.js printed {line:?} instead of its port");
            }
        };
        let prefix = args
            .iter()
            .position(|a| *a == "--prefix")
            .map(|i| args[i + 1].to_string())
            .unwrap_or_default();
        MockGitHub {
            child,
            port,
            prefix,
            _stdin: stdin,
        }
    }

    /// The base URL clients are given: `http://127.0.0.1:PORT` and the `--prefix`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.prefix)
    }

    /// `GET /__state`: comments, check runs, requests, invalid requests.
    pub fn state(&self) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to mock");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /__state HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read state");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).expect("state JSON")
    }
}

impl Drop for MockGitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No request was rejected by the OpenAPI description or the mock's own rules.
pub fn assert_no_invalid_request(state: &Value) {
    let invalid = state["invalid"].as_array().expect("invalid list");
    assert!(
        invalid.is_empty(),
        "requests rejected by the OpenAPI description or the mock: {invalid:#?}"
    );
}
