//! Matching one exec against one recipe: the path matchers (`bases`), our argument matchers
//! (`x-guard.commands`) and the `arbitrary` filters.

use crate::event::{join, Bytes, ExecEvent, Image};

use super::model::{ArbitraryGroup, How, Item, Recipe, Test, What, When, Which};

/// An exec and the images of its ancestors (nearest first, up to the traced root).
pub struct ExecView<'a> {
    pub exec: &'a ExecEvent,
    pub ancestors: &'a [&'a Image],
}

/// Why an exec matched a recipe: one human-readable line per piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub evidence: Vec<String>,
    /// The file an allowlist entry must name to allow this match: the `#!` script when the
    /// script's path matched, else the executable that really ran (never the invoked name or
    /// argv[0], which the process chooses).
    pub allow_path: Bytes,
}

impl<'a> ExecView<'a> {
    /// The paths an exec is known by: the resolved executable, the `#!` script, the invoked path
    /// — and, for a partial record whose process was gone before its executable could be read,
    /// its command name (the executable's file name, cut at 15 bytes by the kernel).
    fn paths(&self) -> impl Iterator<Item = (&'static str, &'a Bytes)> {
        let e = self.exec;
        let comm = if e.exe.is_empty() {
            e.comm.as_ref()
        } else {
            None
        };
        [
            ("exe", Some(&e.exe)),
            ("script", e.script.as_ref()),
            ("invoked path", e.execfn.as_ref()),
            ("command name (process gone)", comm),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.filter(|p| !p.is_empty()).map(|p| (k, p)))
    }

    fn args(&self) -> Vec<u8> {
        join(self.exec.argv.get(1..).unwrap_or(&[]))
    }
}

fn text_values(view: &ExecView, what: What) -> Vec<Vec<u8>> {
    let e = view.exec;
    let parent = view.ancestors.first();
    let image_field = |img: &Image, w: What| -> Vec<u8> {
        match w {
            What::Exe => img.exe.0.clone(),
            What::Comm => img.comm.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
            What::Cmd => join(&img.argv),
            _ => join(img.argv.get(1..).unwrap_or(&[])),
        }
    };
    let own = |w: What| -> Vec<u8> {
        match w {
            What::Exe => e.exe.0.clone(),
            What::Comm => e.comm.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
            What::Cmd => join(&e.argv),
            _ => view.args(),
        }
    };
    let parent_of = |w: What| parent.map(|p| vec![image_field(p, w)]).unwrap_or_default();
    match what {
        What::Exe | What::Comm | What::Cmd | What::Args => vec![own(what)],
        What::ParentExe => parent_of(What::Exe),
        What::ParentComm => parent_of(What::Comm),
        What::ParentCmd => parent_of(What::Cmd),
        What::ParentArgs => parent_of(What::Args),
        What::AncientExe => view
            .ancestors
            .iter()
            .map(|a| image_field(a, What::Exe))
            .collect(),
        What::AncientCmd => view
            .ancestors
            .iter()
            .map(|a| image_field(a, What::Cmd))
            .collect(),
        What::AncientArgs => view
            .ancestors
            .iter()
            .map(|a| image_field(a, What::Args))
            .collect(),
        What::TaskOrParentExe
        | What::TaskOrParentComm
        | What::TaskOrParentCmd
        | What::TaskOrParentArgs => {
            let w = match what {
                What::TaskOrParentExe => What::Exe,
                What::TaskOrParentComm => What::Comm,
                What::TaskOrParentCmd => What::Cmd,
                _ => What::Args,
            };
            let mut v = vec![own(w)];
            v.extend(parent_of(w));
            v
        }
        What::Uid | What::Pid | What::ParentPid => Vec::new(),
    }
}

fn number_value(view: &ExecView, what: What) -> Option<i64> {
    match what {
        What::Uid => Some(i64::from(view.exec.uid)),
        What::Pid => Some(i64::from(view.exec.pid)),
        What::ParentPid => Some(i64::from(view.exec.ppid)),
        _ => None,
    }
}

fn item_holds(view: &ExecView, item: &Item) -> bool {
    let hit = match &item.test {
        Test::Pattern(p) => text_values(view, item.what).iter().any(|v| p.is_match(v)),
        Test::Number(n, when) => number_value(view, item.what).is_some_and(|v| match when {
            When::Smaller => v < *n,
            When::Bigger => v > *n,
            When::Equal => v == *n,
        }),
        Test::Numbers(ns) => number_value(view, item.what).is_some_and(|v| ns.contains(&v)),
    };
    match item.which {
        Which::Pertinent => hit,
        Which::Irrelevant => !hit,
    }
}

/// A group holds when its items hold (all of them for `AND`, one for `OR`). Every group of a
/// recipe must hold for an exec to be kept. (The group's own `which` labels the intent — keep
/// when it holds, or drop unless it holds — and both readings select the same execs.)
fn group_holds(view: &ExecView, group: &ArbitraryGroup) -> bool {
    match group.how {
        How::All => group.items.iter().all(|i| item_holds(view, i)),
        How::Any => group.items.iter().any(|i| item_holds(view, i)),
    }
}

/// Matches an exec against a recipe.
pub fn evaluate(recipe: &Recipe, view: &ExecView) -> Option<Match> {
    let mut evidence = Vec::new();
    let mut allow_path = view.exec.exe.clone();
    'paths: for (label, path) in view.paths() {
        for m in &recipe.bases {
            if m.matches(path) {
                evidence.push(format!("name: {label} {} matches {m}", path.lossy()));
                if label == "script" {
                    allow_path = path.clone();
                }
                break 'paths;
            }
        }
    }
    if evidence.is_empty() {
        let args = view.args();
        let argv0 = view
            .exec
            .argv
            .first()
            .map(|a| a.as_bytes())
            .unwrap_or_default();
        'commands: for c in &recipe.ext.commands {
            if c.args.as_ref().is_some_and(|p| !p.is_match(&args))
                || c.argv0.as_ref().is_some_and(|p| !p.is_match(argv0))
            {
                continue;
            }
            for (label, path) in view.paths() {
                if let Some(m) = c.exe.iter().find(|m| m.matches(path)) {
                    if label == "script" {
                        allow_path = path.clone();
                    }
                    let how: Vec<String> = [("arguments", &c.args), ("argv[0]", &c.argv0)]
                        .iter()
                        .filter_map(|(what, p)| {
                            p.as_ref().map(|p| format!("{what} match /{}/", p.source))
                        })
                        .collect();
                    evidence.push(format!(
                        "arguments: {} ({label} {} matches {m}; {})",
                        c.name,
                        path.lossy(),
                        how.join(", ")
                    ));
                    break 'commands;
                }
            }
        }
    }
    if evidence.is_empty() {
        return None;
    }
    if !recipe.arbitrary.iter().all(|g| group_holds(view, g)) {
        return None;
    }
    Some(Match {
        evidence,
        allow_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn exec(exe: &str, argv: &[&str]) -> ExecEvent {
        ExecEvent {
            seq: 1,
            time: String::new(),
            pid: 100,
            tgid: 100,
            ppid: 99,
            former_tid: None,
            uid: 1000,
            euid: None,
            exe: exe.into(),
            execfn: None,
            script: None,
            argv: argv.iter().map(|a| Bytes::from(*a)).collect(),
            cwd: None,
            comm: None,
            source: Source::Ptrace,
            sources: Vec::new(),
            container: None,
            step: None,
            partial: false,
        }
    }

    fn recipe(yaml: &str) -> Recipe {
        let base = "- kind: t\n  name: t\n  version: 1.0\n  description: d\n  breed: file_access\n  mechanism: execution\n  tactic: none\n  technique: none\n  importance: high\n  file_actions: execve\n";
        super::super::parse("t.yaml", format!("{base}{yaml}").as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn path_matchers() {
        let r = recipe("  bases:\n    - base: nginx\n    - base: httpd\n      dir: /usr/sbin\n    - regex: ^.*/lighttpd(-angel)?$\n");
        let table: &[(&str, bool)] = &[
            ("/usr/sbin/nginx", true),
            ("/opt/nginx-tools/bin/fmt", false),
            ("/usr/sbin/nginx.bak", false),
            ("/usr/sbin/httpd", true),
            ("/usr/bin/httpd", false),
            ("/usr/sbin/lighttpd-angel", true),
            ("/usr/sbin/lighttpd2", false),
            ("nginx", true),
        ];
        for (path, want) in table {
            let e = exec(path, &["x"]);
            let got = evaluate(
                &r,
                &ExecView {
                    exec: &e,
                    ancestors: &[],
                },
            )
            .is_some();
            assert_eq!(got, *want, "{path}");
        }
    }

    #[test]
    fn a_partial_record_is_matched_by_its_command_name() {
        let r = recipe("  bases:\n    - base: nginx\n");
        let mut e = exec("", &[]);
        e.partial = true;
        e.comm = Some("nginx".into());
        let m = evaluate(
            &r,
            &ExecView {
                exec: &e,
                ancestors: &[],
            },
        )
        .unwrap();
        assert!(
            m.evidence[0].contains("command name (process gone) nginx"),
            "{m:?}"
        );
        e.comm = Some("bash".into());
        assert!(evaluate(
            &r,
            &ExecView {
                exec: &e,
                ancestors: &[]
            }
        )
        .is_none());
    }

    #[test]
    fn script_and_invoked_paths_match() {
        let r = recipe("  bases:\n    - base: catalina.sh\n");
        let mut e = exec(
            "/usr/bin/dash",
            &["/bin/sh", "/opt/tomcat/bin/catalina.sh", "run"],
        );
        assert!(evaluate(
            &r,
            &ExecView {
                exec: &e,
                ancestors: &[]
            }
        )
        .is_none());
        e.script = Some("/opt/tomcat/bin/catalina.sh".into());
        let m = evaluate(
            &r,
            &ExecView {
                exec: &e,
                ancestors: &[],
            },
        )
        .unwrap();
        assert!(
            m.evidence[0].contains("script /opt/tomcat/bin/catalina.sh"),
            "{:?}",
            m
        );
    }

    #[test]
    fn commands_by_arguments() {
        let r = recipe(concat!(
            "  x-guard:\n    commands:\n      - name: python http.server\n",
            "        exe: [{regex: '^.*/python[0-9.]*$'}]\n",
            "        args: '(^| )-m ?(http\\.server|SimpleHTTPServer)( |$)'\n"
        ));
        let table: &[(&str, &[&str], bool)] = &[
            (
                "/usr/bin/python3.11",
                &["python3", "-m", "http.server", "8000"],
                true,
            ),
            ("/usr/bin/python3.11", &["python3", "-mhttp.server"], true),
            (
                "/usr/bin/python2.7",
                &["python", "-m", "SimpleHTTPServer"],
                true,
            ),
            (
                "/usr/bin/python3.11",
                &["python3", "-m", "http.cookies"],
                false,
            ),
            (
                "/usr/bin/python3.11",
                &["python3", "-m", "pip", "install", "http.server"],
                false,
            ),
            ("/usr/bin/perl", &["perl", "-m", "http.server"], false),
        ];
        for (exe, argv, want) in table {
            let e = exec(exe, argv);
            assert_eq!(
                evaluate(
                    &r,
                    &ExecView {
                        exec: &e,
                        ancestors: &[]
                    }
                )
                .is_some(),
                *want,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn arbitrary_filters() {
        // Keep only when args mention -l (pertinent item) and the parent is not make.
        let r = recipe(concat!(
            "  bases: [{base: nc}]\n",
            "  arbitrary:\n",
            "    - how: AND\n      which: irrelevant\n      items:\n",
            "        - {what: args, which: pertinent, pattern: '(^| )-l'}\n",
            "        - {what: parent_exe, which: irrelevant, pattern: '/make$'}\n",
            "    - how: OR\n      which: pertinent\n      items:\n",
            "        - {what: uid, number: 0, when: bigger}\n",
            "        - {what: pid, numbers: [1, 2]}\n",
        ));
        let sh = Image {
            pid: 1,
            exe: "/bin/sh".into(),
            argv: vec![],
            comm: None,
        };
        let make = Image {
            pid: 1,
            exe: "/usr/bin/make".into(),
            argv: vec![],
            comm: None,
        };
        let listen = exec("/bin/nc", &["nc", "-l", "80"]);
        let connect = exec("/bin/nc", &["nc", "host", "80"]);
        let view = |e, a: &[&Image]| {
            evaluate(
                &r,
                &ExecView {
                    exec: e,
                    ancestors: a,
                },
            )
            .is_some()
        };
        assert!(view(&listen, &[&sh]));
        assert!(!view(&listen, &[&make]));
        assert!(!view(&connect, &[&sh]));
        let mut root = exec("/bin/nc", &["nc", "-l"]);
        root.uid = 0;
        assert!(!view(&root, &[&sh]));
    }
}
