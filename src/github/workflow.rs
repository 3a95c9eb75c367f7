//! Where a finding points in the repository: the workflow file of the run
//! (`GITHUB_WORKFLOW_REF`), the step in it that ran the process, or a script of the repository
//! in its ancestry.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::check::Finding;
use crate::event::Bytes;
use crate::github::runner::Env;
use crate::report::Location;

/// The workflow file of the run, relative to the repository (see [`workflow_ref_path`]).
pub fn workflow_path(env: &Env) -> Option<String> {
    workflow_ref_path(&env.var("GITHUB_WORKFLOW_REF")?)
}

/// The repository path of the running workflow from `GITHUB_WORKFLOW_REF`
/// (`owner/repo/.github/workflows/ci.yml@refs/heads/main` → `.github/workflows/ci.yml`).
pub fn workflow_ref_path(workflow_ref: &str) -> Option<String> {
    const DIR: &str = ".github/workflows/";
    let start = if workflow_ref.starts_with(DIR) {
        0
    } else {
        workflow_ref.find("/.github/workflows/")? + 1
    };
    let rest = &workflow_ref[start..];
    // A ref may contain '@'; a workflow file name ends in .yml or .yaml.
    let end = [".yml@", ".yaml@"]
        .iter()
        .filter_map(|s| rest.find(s).map(|i| i + s.len() - 1))
        .min()
        .or_else(|| rest.find('@'))
        .unwrap_or(rest.len());
    let path = &rest[..end];
    let sound = path.len() > DIR.len()
        && !path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        && !path.chars().any(char::is_control);
    sound.then(|| path.to_string())
}

/// Workflow files larger than this are not read for step positions. Real workflow files are
/// tens of KiB; the parser holds a whole flow collection (`jobs: {…}`) in memory as tokens,
/// about 200 bytes a byte of input, so this bounds what a hostile file can make it allocate.
const MAX_WORKFLOW_BYTES: usize = 512 << 10;

/// The nodes (scalars, collections, aliases) kept from one workflow file, at most.
const MAX_NODES: usize = 1 << 18;

/// The mapping entries and sequence items looked at by one [`step_line`], at most: merge keys
/// and aliases let a small file make the look-ups of many steps visit the same large mapping.
const MAX_WORK: usize = 1 << 20;

/// The line of the step whose id (as `GITHUB_ACTION` shows it) is `step` in a workflow file,
/// in the job `job` when given. Steps without an `id` get the runner's generated ones:
/// `__run`, `__run_2`… for scripts, `__owner_repo` (then `_2`…) for actions.
///
/// The line is the one of the step's first key; a step reached through aliases
/// (`- *checkout`, `steps: *common`, `<<: *job`, `jobs: *all`) is at the outermost of them, so
/// a reused step is shown in the job that ran it. Only the first YAML document of the file is
/// read. `None` when the file is over [`MAX_WORKFLOW_BYTES`], is not YAML, has too many nodes,
/// takes more than [`MAX_WORK`] look-ups, or has no such step.
pub fn step_line(workflow: &str, job: Option<&str>, step: &str) -> Option<u32> {
    let document = Document::parse(workflow)?;
    Walk {
        document: &document,
        work: 0,
    }
    .step_line(job, step)
    .ok()
    .flatten()
}

/// The first document of a workflow file as a tree of [`Node`]s, in the order of the text.
/// An alias stays a node that names its anchored node: nothing is expanded, so an alias bomb
/// costs what its text costs.
struct Document {
    nodes: Vec<Node>,
    root: usize,
}

struct Node {
    /// The 1-based line where the node starts.
    line: u32,
    kind: Kind,
}

enum Kind {
    /// `plain` when unquoted: only a plain `<<` key is a merge key.
    Scalar {
        value: String,
        plain: bool,
    },
    Sequence(Vec<usize>),
    /// Key and value nodes, in the order of the text.
    Mapping(Vec<(usize, usize)>),
    /// The node the alias's anchor names (possibly one that contains the alias).
    Alias(usize),
}

impl Document {
    /// `None` when the text is too large, not YAML, empty, or has too many nodes.
    fn parse(text: &str) -> Option<Document> {
        if text.len() > MAX_WORKFLOW_BYTES {
            return None;
        }
        let mut parser = Parser::new_from_str(text);
        let mut nodes: Vec<Node> = Vec::new();
        let mut anchors = HashMap::new();
        // The collections being read, each with (for a mapping) the key waiting for its value.
        let mut open: Vec<(usize, Option<usize>)> = Vec::new();
        let mut root = None;
        while let Some(event) = parser.next_event() {
            let (event, span) = event.ok()?;
            let (kind, anchor, opens) = match event {
                Event::Scalar(value, style, anchor, _) => {
                    let plain = style == ScalarStyle::Plain;
                    let value = value.into_owned();
                    (Kind::Scalar { value, plain }, anchor, false)
                }
                Event::SequenceStart(anchor, _) => (Kind::Sequence(Vec::new()), anchor, true),
                Event::MappingStart(anchor, _) => (Kind::Mapping(Vec::new()), anchor, true),
                Event::Alias(anchor) => (Kind::Alias(*anchors.get(&anchor)?), 0, false),
                Event::SequenceEnd | Event::MappingEnd => {
                    open.pop();
                    continue;
                }
                // A workflow is one document; what follows the first is not read.
                Event::DocumentEnd | Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => continue,
            };
            if nodes.len() >= MAX_NODES {
                return None;
            }
            let index = nodes.len();
            nodes.push(Node {
                line: u32::try_from(span.start.line()).ok()?,
                kind,
            });
            if anchor != 0 {
                anchors.insert(anchor, index);
            }
            match open.last_mut() {
                None => root = root.or(Some(index)),
                Some((parent, pending)) => match &mut nodes[*parent].kind {
                    Kind::Sequence(items) => items.push(index),
                    Kind::Mapping(pairs) => match pending.take() {
                        None => *pending = Some(index),
                        Some(key) => pairs.push((key, index)),
                    },
                    Kind::Scalar { .. } | Kind::Alias(_) => {}
                },
            }
            if opens {
                open.push((index, None));
            }
        }
        Some(Document { nodes, root: root? })
    }

    /// The text of a scalar node, or of the scalar an alias names.
    fn scalar(&self, node: usize) -> Option<&str> {
        let node = match self.nodes[node].kind {
            Kind::Alias(target) => target,
            _ => node,
        };
        match &self.nodes[node].kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    fn is_merge_key(&self, node: usize) -> bool {
        matches!(&self.nodes[node].kind, Kind::Scalar { value, plain: true } if value == "<<")
    }
}

/// A node reached from the document's root, with the line of the outermost alias on the way.
#[derive(Clone, Copy)]
struct Reached {
    node: usize,
    alias_line: Option<u32>,
}

/// [`MAX_WORK`] was reached: the file is treated as unreadable.
struct Exhausted;

/// The look-ups of one [`step_line`] in a [`Document`], counting their work.
struct Walk<'d> {
    document: &'d Document,
    work: usize,
}

impl<'d> Walk<'d> {
    fn charge(&mut self, work: usize) -> Result<(), Exhausted> {
        self.work = self.work.saturating_add(work);
        if self.work > MAX_WORK {
            Err(Exhausted)
        } else {
            Ok(())
        }
    }

    /// `node`, or the node it names when it is an alias (then remembering the alias's line).
    fn reach(&self, node: usize, alias_line: Option<u32>) -> Reached {
        let n = &self.document.nodes[node];
        match n.kind {
            Kind::Alias(target) => Reached {
                node: target,
                alias_line: alias_line.or(Some(n.line)),
            },
            _ => Reached { node, alias_line },
        }
    }

    /// The entries of a mapping (none for another node) as (key node, value), its own first,
    /// then those of its merge keys (`<<: *a` or `<<: [*a, *b]`) in order, depth first: the
    /// first entry of a key is the one that counts. A mapping merged twice, or into itself,
    /// is read once.
    fn entries(&mut self, mapping: Reached) -> Result<Vec<(usize, Reached)>, Exhausted> {
        let document = self.document;
        let mut entries = Vec::new();
        let mut read = HashSet::new();
        let mut pending = vec![mapping];
        while let Some(m) = pending.pop() {
            if !read.insert(m.node) {
                continue;
            }
            let Kind::Mapping(pairs) = &document.nodes[m.node].kind else {
                continue;
            };
            self.charge(pairs.len() + 1)?;
            let mut merged = Vec::new();
            for &(key, value) in pairs {
                if document.is_merge_key(key) {
                    merged.push(self.reach(value, m.alias_line));
                } else {
                    entries.push((key, self.reach(value, m.alias_line)));
                }
            }
            // Pushed in reverse, so that the first merged mapping is read first.
            for source in merged.into_iter().rev() {
                match &document.nodes[source.node].kind {
                    Kind::Sequence(items) => {
                        self.charge(items.len())?;
                        for &item in items.iter().rev() {
                            pending.push(self.reach(item, source.alias_line));
                        }
                    }
                    _ => pending.push(source),
                }
            }
        }
        Ok(entries)
    }

    /// The value of `key` in `mapping` (see [`Walk::entries`]).
    fn get(&mut self, mapping: Reached, key: &str) -> Result<Option<Reached>, Exhausted> {
        let entries = self.entries(mapping)?;
        Ok(find(self.document, &entries, key))
    }

    fn step_line(&mut self, job: Option<&str>, step: &str) -> Result<Option<u32>, Exhausted> {
        let document = self.document;
        let root = self.reach(document.root, None);
        let Some(jobs) = self.get(root, "jobs")? else {
            return Ok(None);
        };
        let mut seen = HashSet::new();
        for (name, value) in self.entries(jobs)? {
            let Some(name) = document.scalar(name) else {
                continue;
            };
            if !seen.insert(name) || job.is_some_and(|j| j != name) {
                continue;
            }
            if let Some(line) = self.step_in_job(value, step)? {
                return Ok(Some(line));
            }
        }
        Ok(None)
    }

    fn step_in_job(&mut self, job: Reached, step: &str) -> Result<Option<u32>, Exhausted> {
        let document = self.document;
        let Some(steps) = self.get(job, "steps")? else {
            return Ok(None);
        };
        let Kind::Sequence(items) = &document.nodes[steps.node].kind else {
            return Ok(None);
        };
        self.charge(items.len())?;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for &item in items {
            let item = self.reach(item, steps.alias_line);
            let Kind::Mapping(pairs) = &document.nodes[item.node].kind else {
                continue;
            };
            let entries = self.entries(item)?;
            let value = |key| find(document, &entries, key).map(|v| document.scalar(v.node));
            // The runner's rule, as the scanner before this had it.
            let id = match value("id") {
                Some(id) => id.unwrap_or("").to_string(),
                None => {
                    let base = if value("run").is_some() {
                        "__run".to_string()
                    } else if let Some(uses) = value("uses") {
                        let name = uses.unwrap_or("").split('@').next().unwrap_or("");
                        let parts: Vec<&str> = name.split('/').take(2).collect();
                        format!("__{}", parts.join("_").replace(['-', '.'], "_"))
                    } else {
                        continue;
                    };
                    let n = counts.entry(base.clone()).or_insert(0);
                    *n += 1;
                    if *n == 1 {
                        base
                    } else {
                        format!("{base}_{n}")
                    }
                }
            };
            if id == step {
                let first_key = pairs.first().map(|&(key, _)| document.nodes[key].line);
                let own = first_key.unwrap_or(document.nodes[item.node].line);
                return Ok(Some(item.alias_line.unwrap_or(own)));
            }
        }
        Ok(None)
    }
}

/// The value of the first of `entries` whose key is the scalar `key`.
fn find(document: &Document, entries: &[(usize, Reached)], key: &str) -> Option<Reached> {
    entries
        .iter()
        .find(|&&(k, _)| document.scalar(k) == Some(key))
        .map(|&(_, value)| value)
}

/// Where a finding points: the workflow step that ran it, else a script of the repository in
/// its ancestry (or the exec's own script), at line 1.
pub fn locate(env: &Env, f: &Finding, workflow: Option<&(String, String)>) -> Option<Location> {
    let p = f.process.as_ref()?;
    if let (Some(step), Some((path, text))) = (&p.step, workflow) {
        let step = String::from_utf8_lossy(step.as_bytes());
        if let Some(line) = step_line(text, env.var("GITHUB_JOB").as_deref(), &step) {
            return Some(Location {
                path: path.clone(),
                line,
            });
        }
    }
    let workspace = env.var("GITHUB_WORKSPACE")?;
    let ws = format!("{}/", workspace.trim_end_matches('/'));
    // A path the build chose: one with control, bidi or invisible characters is not shown as a
    // location (annotations, check runs show it raw); the finding still says it, escaped.
    let in_repo = |b: &Bytes| -> Option<String> {
        let s = String::from_utf8(b.0.clone()).ok()?;
        let rel = s.strip_prefix(&ws)?;
        (Path::new(&s).is_file() && crate::escape::is_plain(rel)).then(|| rel.to_string())
    };
    let candidates = p
        .script
        .iter()
        .cloned()
        .chain(p.ancestry.iter().flat_map(|a| {
            a.argv
                .iter()
                .skip(1)
                .take(2)
                .cloned()
                .chain(std::iter::once(a.exe.clone()))
        }));
    for c in candidates {
        if let Some(rel) = in_repo(&c) {
            return Some(Location { path: rel, line: 1 });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = "\
name: ci
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Build
        run: make
      - id: tests
        run: |
          make test
      - run: ./deploy.sh
      - uses: actions/setup-node@v4
        with:
          node-version: 20
  other:
    runs-on: ubuntu-latest
    steps:
      - run: echo other
";

    #[test]
    fn steps_are_found_by_id_and_generated_id() {
        assert_eq!(
            step_line(WORKFLOW, Some("build"), "__actions_checkout"),
            Some(7)
        );
        assert_eq!(step_line(WORKFLOW, Some("build"), "__run"), Some(8));
        assert_eq!(step_line(WORKFLOW, Some("build"), "tests"), Some(10));
        assert_eq!(step_line(WORKFLOW, Some("build"), "__run_2"), Some(13));
        assert_eq!(
            step_line(WORKFLOW, Some("build"), "__actions_setup_node"),
            Some(14)
        );
        assert_eq!(step_line(WORKFLOW, Some("other"), "__run"), Some(20));
        assert_eq!(step_line(WORKFLOW, Some("build"), "nope"), None);
    }

    /// Each `(job, step, line)` of `cases` in `workflow`.
    fn assert_lines(workflow: &str, cases: &[(Option<&str>, &str, Option<u32>)]) {
        for &(job, step, line) in cases {
            assert_eq!(step_line(workflow, job, step), line, "{job:?} {step}");
        }
    }

    #[test]
    fn flow_style_jobs_and_steps() {
        let one_line = "on: push\njobs: {build: {runs-on: x, steps: [{run: make}, \
                        {uses: actions/checkout@v4}, {id: t, run: test}]}}\n";
        assert_lines(
            one_line,
            &[
                (Some("build"), "__run", Some(2)),
                (Some("build"), "__actions_checkout", Some(2)),
                (Some("build"), "t", Some(2)),
                (Some("build"), "__run_2", None),
            ],
        );
        let spread = "\
on: push
jobs: {
  build: {
    runs-on: x,
    steps: [
      {run: make},
      {uses: actions/checkout@v4},
      { id: t,
        run: test },
      {
        run: more },
    ]
  }
}
";
        assert_lines(
            spread,
            &[
                (Some("build"), "__run", Some(6)),
                (Some("build"), "__actions_checkout", Some(7)),
                (Some("build"), "t", Some(8)),
                // The first key's line, not the brace's.
                (Some("build"), "__run_2", Some(11)),
            ],
        );
    }

    #[test]
    fn jobs_key_not_at_column_0() {
        // JSON is YAML: `jobs` is a quoted key inside the document's flow mapping.
        let json = r#"{"name": "ci", "on": "push",
 "jobs": {"build": {"runs-on": "x", "steps": [
   {"uses": "actions/checkout@v4"},
   {"id": "tests", "run": "make test"}]}}}
"#;
        assert_lines(
            json,
            &[
                (Some("build"), "__actions_checkout", Some(3)),
                (Some("build"), "tests", Some(4)),
                (None, "tests", Some(4)),
            ],
        );
        // A `jobs` key deeper in the document is not the workflow's jobs.
        let nested = "\
env:
  jobs:
    build:
      steps:
        - id: fake
          run: x
jobs:
  build:
    steps:
      - id: real
        run: y
";
        assert_lines(
            nested,
            &[
                (Some("build"), "fake", None),
                (Some("build"), "real", Some(10)),
            ],
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        // A step reached through an alias is at the first alias on the way from the job: the
        // annotation lands in the job that ran the step, not in the job that defined it.
        let workflow = "\
on: push
jobs:
  build: &build
    runs-on: ubuntu-latest
    steps: &common
      - &checkout
        uses: actions/checkout@v4
      - &make
        name: Build
        run: make
      - <<: *make
        name: Build again
      - id: tests
        <<: *make
      - &named
        id: first
        run: x
      - <<: *named
        id: second
  lint:
    runs-on: ubuntu-latest
    steps:
      - *checkout
      - run: lint
      - *make
  reuse:
    runs-on: ubuntu-latest
    steps: *common
  copy:
    <<: *build
    name: Copy
";
        assert_lines(
            workflow,
            &[
                // Written in the job: the first key (after the anchor, on its own line).
                (Some("build"), "__actions_checkout", Some(7)),
                (Some("build"), "__run", Some(9)),
                // A step whose `run` comes from a merge key is a `run` step, at its `<<`.
                (Some("build"), "__run_2", Some(11)),
                (Some("build"), "tests", Some(13)),
                (Some("build"), "first", Some(16)),
                // The step's own `id` overrides the merged one.
                (Some("build"), "second", Some(18)),
                (Some("build"), "__run_3", None),
                // `- *alias` items.
                (Some("lint"), "__actions_checkout", Some(23)),
                (Some("lint"), "__run", Some(24)),
                (Some("lint"), "__run_2", Some(25)),
                // `steps: *alias`: every step at the alias.
                (Some("reuse"), "__actions_checkout", Some(28)),
                (Some("reuse"), "tests", Some(28)),
                (Some("reuse"), "second", Some(28)),
                // A job merged from another: at the merge key.
                (Some("copy"), "__run_2", Some(30)),
                (None, "tests", Some(13)),
            ],
        );
        // Anchors that contain their own alias: read once, no endless loop.
        let cyclic = "jobs: &j\n  <<: *j\n  build:\n    steps: &s\n      - &st\n        <<: *st\n        run: x\n      - *s\n";
        assert_lines(
            cyclic,
            &[
                (Some("build"), "__run", Some(6)),
                (Some("build"), "__run_2", None),
            ],
        );
    }

    #[test]
    fn comments_are_not_steps() {
        let workflow = "\
# - run: commented
jobs: # the jobs
  build:
    steps:
      # - id: tests
      #   run: fake
      - run: echo \"# not a comment\" # a comment
      - id: tests # the tests
        run: make
      #- uses: x/y@v1
";
        assert_lines(
            workflow,
            &[
                (Some("build"), "__run", Some(7)),
                (Some("build"), "tests", Some(8)),
                (Some("build"), "__x_y", None),
            ],
        );
    }

    #[test]
    fn quoted_keys_and_values() {
        let workflow = "\
jobs:
  \"build\":
    'steps':
      - \"id\": tests
        run: make
      - 'run': make
      - \"uses\": \"actions/checkout@v4\"
      - id: 'quoted id'
        run: x
";
        assert_lines(
            workflow,
            &[
                (Some("build"), "tests", Some(4)),
                (Some("build"), "__run", Some(6)),
                (Some("build"), "__actions_checkout", Some(7)),
                (Some("build"), "quoted id", Some(8)),
            ],
        );
    }

    #[test]
    fn block_scalars_are_text() {
        let workflow = "\
jobs:
  build:
    steps:
      - run: |
          cat <<EOF
          - id: fake
            run: make
          jobs:
          EOF
      - id: real
        run: >-
          make
          test
      - run: |+
          tail

      - uses: actions/checkout@v4
";
        assert_lines(
            workflow,
            &[
                (Some("build"), "fake", None),
                (Some("build"), "__run", Some(4)),
                (Some("build"), "real", Some(10)),
                (Some("build"), "__run_2", Some(14)),
                (Some("build"), "__actions_checkout", Some(17)),
            ],
        );
    }

    #[test]
    fn document_headers_and_only_the_first_document() {
        let workflow = "\
%YAML 1.2
--- # the workflow
name: ci
jobs:
  build:
    steps:
      - run: make
...
---
jobs:
  build:
    steps:
      - id: second
        run: x
";
        assert_lines(
            workflow,
            &[
                (Some("build"), "__run", Some(7)),
                (Some("build"), "second", None),
            ],
        );
        let inline = "--- {jobs: {b: {steps: [{run: x}]}}}\n";
        assert_eq!(step_line(inline, Some("b"), "__run"), Some(1));
    }

    #[test]
    fn crlf_line_endings() {
        let crlf = WORKFLOW.replace('\n', "\r\n");
        for step in ["__actions_checkout", "__run", "tests", "__run_2"] {
            assert_eq!(
                step_line(&crlf, Some("build"), step),
                step_line(WORKFLOW, Some("build"), step),
                "{step}"
            );
        }
        assert_eq!(step_line(&crlf, Some("other"), "__run"), Some(20));
    }

    #[test]
    fn tabs_in_strings() {
        let workflow = "\
jobs:
  build:
    steps:
      - run: \"printf 'a\tb'\"
      - id: t\t# a tab before the comment
        run: echo\ta\tb
      - run: |
          printf '\t'
      - uses: actions/checkout@v4
";
        assert_lines(
            workflow,
            &[
                (Some("build"), "__run", Some(4)),
                (Some("build"), "t", Some(5)),
                (Some("build"), "__run_2", Some(7)),
                (Some("build"), "__actions_checkout", Some(9)),
            ],
        );
    }

    #[test]
    fn not_yaml_is_none() {
        for text in [
            "",
            "just a scalar",
            "- a\n- list",
            "jobs: [",
            "jobs: *undefined",
            "jobs:\n\tbuild:\n\t\tsteps:\n\t\t\t- run: x\n",
            "jobs:\n  build:\n    steps:\n      - run: x\n     bad: indent\n",
            "jobs: {build: {steps: [{run: x}]}\n",
        ] {
            assert_eq!(step_line(text, Some("build"), "__run"), None, "{text:?}");
        }
    }

    /// `step_line` on a hostile `text`: it must return (the size, node and work bounds stop
    /// it; how long it takes is measured nowhere but in a benchmark).
    fn quickly(text: &str, job: &str, step: &str) -> Option<u32> {
        step_line(text, Some(job), step)
    }

    #[test]
    fn hostile_workflows_are_bounded() {
        // Over the size bound, even with the step in it.
        let huge = format!(
            "jobs:\n  b:\n    steps:\n      - run: x\n{}",
            "# padding\n".repeat(MAX_WORKFLOW_BYTES / 10 + 1)
        );
        assert!(huge.len() > MAX_WORKFLOW_BYTES);
        assert_eq!(quickly(&huge, "b", "__run"), None);

        // Flow nesting: the parser's own limit.
        assert_eq!(quickly(&"[".repeat(100_000), "b", "__run"), None);
        assert_eq!(quickly(&"{a: ".repeat(100_000), "b", "__run"), None);
        // Block nesting, as deep as fits in the size bound.
        let deep: String = (0..800).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(deep.len() < MAX_WORKFLOW_BYTES);
        assert_eq!(quickly(&deep, "b", "__run"), None);

        // Billion laughs: 10^9 steps if aliases were expanded; they are not, and a list of
        // lists is no list of steps.
        let mut bomb = String::from("x:\n  l0: &l0 [{run: x}, {run: x}, {run: x}, {run: x}, {run: x}, {run: x}, {run: x}, {run: x}, {run: x}, {run: x}]\n");
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
        }
        let laughs = format!("{bomb}jobs:\n  b:\n    steps: *l9\n");
        assert_eq!(quickly(&laughs, "b", "__run"), None);
        let ten = format!("{bomb}jobs:\n  b:\n    steps: *l0\n");
        assert_eq!(quickly(&ten, "b", "__run_10"), Some(14));

        // Merge keys 2^40 deep if expanded: each mapping is read once per look-up.
        let mut merges = String::from("x:\n  m0: &m0 {run: x}\n");
        for i in 1..=40 {
            let p = i - 1;
            merges.push_str(&format!("  m{i}: &m{i} {{<<: [*m{p}, *m{p}]}}\n"));
        }
        let merges = format!("{merges}jobs:\n  b:\n    steps:\n      - <<: *m40\n");
        assert_eq!(quickly(&merges, "b", "__run"), Some(46));

        // Many steps merging one large mapping: the work bound gives up, within the size
        // bound, rather than reading the mapping for each step.
        let wide = |keys: usize, steps: usize| {
            let mut text = String::from("x: &big\n");
            for i in 0..keys {
                text.push_str(&format!("  k{i}: v\n"));
            }
            text.push_str("jobs:\n  b:\n    steps:\n");
            text.push_str(&"      - <<: *big\n".repeat(steps));
            text + "      - run: x\n"
        };
        let small = wide(100, 100);
        assert_eq!(quickly(&small, "b", "__run"), Some(205));
        let large = wide(15_000, 15_000);
        assert!(large.len() < MAX_WORKFLOW_BYTES);
        assert_eq!(quickly(&large, "b", "__run"), None);

        // The parser's worst case for memory: one flow collection filling the size bound.
        let item = "{run: x}, ";
        let n = (MAX_WORKFLOW_BYTES - 100) / item.len();
        let flow = format!("{{jobs: {{b: {{steps: [{}]}}}}}}", item.repeat(n));
        assert!(flow.len() <= MAX_WORKFLOW_BYTES);
        assert_eq!(quickly(&flow, "b", &format!("__run_{n}")), Some(1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Whatever the build writes in its workflow file, `step_line` returns.
        #[test]
        fn never_panics(tokens in proptest::collection::vec(proptest::sample::select(vec![
            "jobs", "steps", "build", "run", "id", "uses", "<<", ":", " ", "  ", "\n", "\r\n",
            "\t", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "\"", "'", "|", ">-",
            "#", "---", "...", "? ", "!tag ", "%YAML 1.2\n", "\\", "x",
        ]), 0..80)) {
            let text: String = tokens.concat();
            for step in ["__run", "__run_2", "x"] {
                let _ = step_line(&text, Some("build"), step);
                let _ = step_line(&text, None, step);
            }
        }
    }

    #[test]
    fn workflow_ref_to_path() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "octo/app/.github/workflows/ci.yml@refs/heads/main",
                Some(".github/workflows/ci.yml"),
            ),
            (
                "octo/app/.github/workflows/build.yaml@refs/heads/a@b",
                Some(".github/workflows/build.yaml"),
            ),
            (
                "octo/app/.github/workflows/ci.yml@refs/pull/1/merge",
                Some(".github/workflows/ci.yml"),
            ),
            (".github/workflows/x.yml", Some(".github/workflows/x.yml")),
            ("octo/app/.github/workflows/../../etc.yml@x", None),
            ("octo/app/ci.yml@refs/heads/main", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(workflow_ref_path(input).as_deref(), *want, "{input}");
        }
    }
}
