//! Where a finding points in the repository: the workflow file of the run
//! (`GITHUB_WORKFLOW_REF`), the step in it that ran the process, or a script of the repository
//! in its ancestry.

use std::path::Path;

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

/// The line of the step whose id (as `GITHUB_ACTION` shows it) is `step` in a workflow file,
/// in the job `job` when given. Steps without an `id` get the runner's generated ones:
/// `__run`, `__run_2`… for scripts, `__owner_repo` (then `_2`…) for actions.
pub fn step_line(workflow: &str, job: Option<&str>, step: &str) -> Option<u32> {
    let lines: Vec<&str> = workflow.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut in_jobs = false;
    let mut jobs_indent = None;
    let mut current_job: Option<String> = None;
    let mut steps_indent: Option<usize> = None;
    let mut item: Item = None;
    let mut found = None;
    type Item = Option<(usize, u32, Vec<(String, String)>)>;
    type Counts = std::collections::HashMap<String, u32>;
    fn finish(
        item: &mut Item,
        job_ok: bool,
        found: &mut Option<u32>,
        counts: &mut Counts,
        step: &str,
    ) {
        let Some((_, line, keys)) = item.take() else {
            return;
        };
        let get = |k: &str| {
            keys.iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_string())
        };
        let id = match get("id") {
            Some(id) => id,
            None => {
                let base = if get("run").is_some() {
                    "__run".to_string()
                } else if let Some(uses) = get("uses") {
                    let name = uses.split('@').next().unwrap_or("");
                    let parts: Vec<&str> = name.split('/').take(2).collect();
                    format!("__{}", parts.join("_").replace(['-', '.'], "_"))
                } else {
                    return;
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
        if job_ok && found.is_none() && id == step {
            *found = Some(line);
        }
    }
    let mut counts = Counts::default();
    // Ends the step item being read, in the job being read.
    macro_rules! flush {
        () => {
            finish(
                &mut item,
                job.is_none_or(|j| current_job.as_deref() == Some(j)),
                &mut found,
                &mut counts,
                step,
            )
        };
    }
    for (i, raw) in lines.iter().enumerate() {
        let l = raw.trim_end();
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let ind = indent(l);
        let text = l.trim_start();
        if ind == 0 {
            flush!();
            in_jobs = text.starts_with("jobs:");
            continue;
        }
        if !in_jobs {
            continue;
        }
        if jobs_indent.is_none() || Some(ind) == jobs_indent {
            if let Some(name) = text.strip_suffix(':') {
                flush!();
                jobs_indent = Some(ind);
                current_job = Some(name.trim_matches(|c| c == '"' || c == '\'').to_string());
                steps_indent = None;
                counts.clear();
                continue;
            }
        }
        if text == "steps:" {
            steps_indent = Some(ind);
            continue;
        }
        let Some(si) = steps_indent else { continue };
        if ind <= si && !text.starts_with("- ") || ind < si {
            flush!();
            steps_indent = None;
            continue;
        }
        let (key_text, starts_item) = match text.strip_prefix("- ") {
            Some(rest) if item.as_ref().is_none_or(|(ii, _, _)| ind <= *ii) => (rest, true),
            _ => (text, false),
        };
        if starts_item {
            flush!();
            item = Some((ind, i as u32 + 1, Vec::new()));
        }
        if let Some((ii, _, keys)) = item.as_mut() {
            if let Some((k, v)) = key_text.split_once(':') {
                let key_indent = if starts_item { ind + 2 } else { ind };
                if key_indent == *ii + 2 && !k.contains(' ') {
                    keys.push((k.to_string(), v.trim().to_string()));
                }
            }
        }
    }
    flush!();
    found
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
