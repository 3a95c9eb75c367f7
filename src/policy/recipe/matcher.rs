//! Matching one exec against one recipe: the path matchers (`bases`), our argument matchers
//! (`x-guard.commands`) and the `arbitrary` filters.

use crate::event::{join, Bytes, ExecEvent, Image};

use super::model::{
    ArbitraryGroup, ArgvMatcher, ArgvSyntax, CommandMatcher, How, Item, Recipe, Test, What, When,
    Which,
};

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
            What::Exe => img.exe().to_vec(),
            What::Comm => img.comm().map(<[u8]>::to_vec).unwrap_or_default(),
            What::Cmd => img.join(0),
            _ => img.join(1),
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

/// A command line read with a program's [`ArgvSyntax`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedArgv<'a> {
    /// (letter, value) of the options with a value, in order.
    pub options: Vec<(char, &'a [u8])>,
    /// The first argument that is not an option.
    pub operand: Option<&'a [u8]>,
    /// The arguments after the option that ended the options, or after the operand.
    pub rest: &'a [Bytes],
}

/// Reads `args` (the arguments after argv\[0\]) the way a getopt-style program does.
pub fn parse_argv<'a>(syntax: &ArgvSyntax, args: &'a [Bytes]) -> ParsedArgv<'a> {
    let mut out = ParsedArgv::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            out.operand = args.get(i).map(|a| a.as_bytes());
            out.rest = args.get(i + 1..).unwrap_or(&[]);
            return out;
        }
        if arg.starts_with(b"--") {
            // --name=value carries its value; --name takes the next one when it has one.
            let (name, attached) = match arg.iter().position(|&b| b == b'=') {
                Some(eq) => (&arg[..eq], Some(&arg[eq + 1..])),
                None => (arg, None),
            };
            let letter = syntax
                .long
                .iter()
                .find(|(l, _)| l.as_bytes() == name)
                .map(|(_, c)| *c);
            let takes_value =
                letter.is_some() || syntax.long_values.iter().any(|l| l.as_bytes() == name);
            let value: &[u8] = match attached {
                Some(v) => v,
                None if takes_value && i < args.len() => {
                    i += 1;
                    args[i - 1].as_bytes()
                }
                None => b"",
            };
            if let Some(c) = letter {
                out.options.push((c, value));
                if syntax.ends.contains(c) {
                    out.rest = args.get(i..).unwrap_or(&[]);
                    return out;
                }
            }
            continue;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            // An operand (`-` alone is stdin): the program's own options end here.
            out.operand = Some(arg);
            out.rest = args.get(i..).unwrap_or(&[]);
            return out;
        }
        let mut k = 1;
        while k < arg.len() {
            let c = arg[k] as char;
            k += 1;
            if !syntax.values.contains(c) {
                // A flag (an unknown letter is read as one, as lenient parsers do).
                continue;
            }
            let value: &[u8] = if k < arg.len() {
                &arg[k..]
            } else if i < args.len() {
                i += 1;
                args[i - 1].as_bytes()
            } else {
                b""
            };
            out.options.push((c, value));
            if syntax.ends.contains(c) {
                out.rest = args.get(i..).unwrap_or(&[]);
                return out;
            }
            break;
        }
    }
    out
}

impl ArgvMatcher {
    /// Whether a command line holds, and how (for the evidence).
    pub fn holds(&self, args: &[Bytes]) -> Option<String> {
        let parsed = parse_argv(&self.syntax, args);
        let mut how = Vec::new();
        for (letter, pattern) in &self.options {
            let value = parsed
                .options
                .iter()
                .find(|(c, v)| c == letter && pattern.is_match(v))?
                .1;
            how.push(format!("-{letter} {}", String::from_utf8_lossy(value)));
        }
        if let Some(p) = &self.operand {
            let operand = parsed.operand.filter(|o| p.is_match(o))?;
            how.push(format!("program {}", String::from_utf8_lossy(operand)));
        }
        if let Some(p) = &self.rest {
            let rest = join(parsed.rest);
            if !p.is_match(&rest) {
                return None;
            }
            how.push(format!("then {}", String::from_utf8_lossy(&rest)));
        }
        Some(how.join(", "))
    }
}

/// How a command's program was recognised: by a path or by content.
fn command_program(c: &CommandMatcher, view: &ExecView) -> Option<(String, Option<Bytes>)> {
    for (label, path) in view.paths() {
        let file_name = path.file_name();
        if let Some(m) = c.exe.iter().find(|m| m.matches_split(path, file_name)) {
            let script = (label == "script").then(|| path.clone());
            return Some((format!("{label} {} matches {m}", path.lossy()), script));
        }
    }
    let name = c.content.iter().find(|n| view.exec.content.contains(n))?;
    Some((
        format!("content of {} is {name}", view.exec.exe.lossy()),
        None,
    ))
}

/// The arguments of a command, when they hold: the evidence.
fn command_args(c: &CommandMatcher, view: &ExecView) -> Option<Vec<String>> {
    let mut how = Vec::new();
    if let Some(p) = &c.args {
        if !p.is_match(&view.args()) {
            return None;
        }
        how.push(format!("arguments match /{}/", p.source));
    }
    if let Some(p) = &c.argv0 {
        let argv0 = view
            .exec
            .argv
            .first()
            .map(|a| a.as_bytes())
            .unwrap_or_default();
        if !p.is_match(argv0) {
            return None;
        }
        how.push(format!("argv[0] matches /{}/", p.source));
    }
    if let Some(m) = &c.argv {
        how.push(m.holds(view.exec.argv.get(1..).unwrap_or(&[]))?);
    }
    Some(how)
}

/// What an exec's paths and content say about it for one recipe: everything that does not
/// depend on its arguments. The same executable run again gives the same identity, so a
/// checker can keep it (see [`identity_key`]).
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// The `bases` evidence, and the script to allow by when the script's path matched.
    name: Option<(String, Option<Bytes>)>,
    /// The `content` evidence (fingerprints with `match: true`).
    content: Vec<String>,
    /// Commands whose program this is: (index, how, the script when found by its path).
    programs: Vec<(usize, String, Option<Bytes>)>,
}

impl Identity {
    /// Nothing about the executable ties it to the recipe: the exec cannot match, whatever its
    /// arguments and ancestors (most execs of a build, for most recipes).
    pub fn is_none(&self) -> bool {
        self.name.is_none() && self.content.is_empty() && self.programs.is_empty()
    }
}

/// The key under which an [`Identity`] can be reused: the exec's paths and content, written into
/// `key` (cleared first).
pub fn identity_key(e: &ExecEvent, key: &mut Vec<u8>) {
    key.clear();
    for part in [
        Some(&e.exe),
        e.script.as_ref(),
        e.execfn.as_ref(),
        e.exe.is_empty().then_some(e.comm.as_ref()).flatten(),
    ] {
        key.extend_from_slice(part.map(|p| p.as_bytes()).unwrap_or(b"\0-"));
        key.push(0);
    }
    for c in &e.content {
        key.extend_from_slice(c.as_bytes());
        key.push(0);
    }
}

/// The identity of an exec for a recipe.
pub fn identify(recipe: &Recipe, view: &ExecView) -> Identity {
    let mut id = Identity::default();
    'paths: for (label, path) in view.paths() {
        let file_name = path.file_name();
        for m in &recipe.bases {
            if m.matches_split(path, file_name) {
                let script = (label == "script").then(|| path.clone());
                id.name = Some((
                    format!("name: {label} {} matches {m}", path.lossy()),
                    script,
                ));
                break 'paths;
            }
        }
    }
    for f in recipe.ext.fingerprints.iter().filter(|f| f.r#match) {
        if view.exec.content.contains(&f.name) {
            id.content.push(format!(
                "content: {} is {} (fingerprint {})",
                view.exec.exe.lossy(),
                f.name,
                f.describe()
            ));
        }
    }
    for (i, c) in recipe.ext.commands.iter().enumerate() {
        if let Some((how, script)) = command_program(c, view) {
            id.programs.push((i, how, script));
        }
    }
    id
}

/// Matches an exec against a recipe. Every kind of evidence is collected: its name (a path
/// in `bases`), its content (a fingerprint with `match: true`), its arguments (a command).
pub fn evaluate(recipe: &Recipe, view: &ExecView) -> Option<Match> {
    evaluate_with(recipe, view, &identify(recipe, view))
}

/// [`evaluate`] with the exec's identity known.
pub fn evaluate_with(recipe: &Recipe, view: &ExecView, id: &Identity) -> Option<Match> {
    if id.is_none() {
        return None;
    }
    let mut evidence = Vec::new();
    let mut allow_path = view.exec.exe.clone();
    if let Some((line, script)) = &id.name {
        evidence.push(line.clone());
        if let Some(script) = script {
            allow_path = script.clone();
        }
    }
    evidence.extend(id.content.iter().cloned());
    for (i, program, script) in &id.programs {
        let c = &recipe.ext.commands[*i];
        let Some(how) = command_args(c, view) else {
            continue;
        };
        if let Some(script) = script {
            if evidence.is_empty() {
                allow_path = script.clone();
            }
        }
        evidence.push(format!(
            "arguments: {} ({program}; {})",
            c.name,
            how.join(", ")
        ));
        break;
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
            content: Vec::new(),
            blocked: false,
            attempt: None,
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
        let sh = Image::new(1, b"/bin/sh", &[], None);
        let make = Image::new(1, b"/usr/bin/make", &[], None);
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

    /// The built-in recipe against interpreter command lines: each spelling of a server, and
    /// the look-alikes that are not one.
    #[test]
    fn builtin_interpreter_forms() {
        let set = crate::policy::recipe::RecipeSet::builtin();
        let r = &set.get("webserver_exec").unwrap().recipe;
        let py = "/usr/bin/python3.11";
        let table: &[(&str, &[&str], &[&str], bool)] = &[
            (py, &[], &["python3", "-m", "http.server"], true),
            (py, &[], &["python3", "-mhttp.server", "8000"], true),
            (py, &[], &["python3", "-Bm", "http.server"], true),
            (py, &[], &["python3", "-X", "a b", "-m", "http.server"], true),
            (py, &[], &["python3", "-W", "ignore", "-u", "-m", "SimpleHTTPServer"], true),
            (py, &[], &["python3", "--check-hash-based-pycs", "never", "-m", "http.server"], true),
            (py, &[], &["python3", "-m", "runpy", "http.server", "9000"], true),
            (py, &[], &["python3", "/usr/lib/python3.11/http/server.py"], true),
            (py, &[], &["python3", "-c", "import http.server as h; h.test()"], true),
            (py, &[], &["python3", "-c", "from http.server import HTTPServer, SimpleHTTPRequestHandler as H\nHTTPServer(('', 80), H).serve_forever()"], true),
            (py, &[], &["python3", "-m", "gunicorn", "app:app"], true),
            (py, &[], &["python3", "-m", "twisted", "web", "--path", "."], true),
            // Renamed python: recognised by content.
            ("/tmp/x/tool", &["python"], &["tool", "-m", "http.server"], true),
            (py, &[], &["python3", "-m", "http.cookies"], false),
            (py, &[], &["python3", "-m", "pip", "install", "http.server"], false),
            (py, &[], &["python3", "-c", "print(1)", "-m", "http.server"], false),
            (py, &[], &["python3", "script.py", "-m", "http.server"], false),
            (py, &[], &["python3", "-c", "import http.server"], false),
            (py, &[], &["python3", "-c", "import urllib.request; urllib.request.urlopen('http://x')"], false),
            (py, &[], &["python3", "-m", "runpy", "json.tool"], false),
            ("/tmp/x/tool", &[], &["tool", "-m", "http.server"], false),
            ("/usr/bin/php8.2", &[], &["php", "-S", "127.0.0.1:8000"], true),
            ("/usr/bin/php8.2", &[], &["php", "-n", "-dmemory_limit=1G", "-S", "0:80", "-t", "."], true),
            ("/usr/bin/php8.2", &[], &["php", "-nS", "0:80"], true),
            ("/usr/bin/php8.2", &[], &["php", "--server", "0:80"], true),
            ("/usr/bin/php8.2", &[], &["php", "script.php", "-S", "x"], false),
            ("/usr/bin/php8.2", &[], &["php", "-r", "echo 1;", "-S", "x"], false),
            ("/usr/bin/php8.2", &[], &["php", "-s", "file.php"], false),
            ("/usr/bin/ruby3.1", &[], &["ruby", "-run", "-e", "httpd", ".", "-p", "8000"], true),
            ("/usr/bin/ruby3.1", &[], &["ruby", "-rwebrick", "-e", "1"], true),
            ("/usr/bin/ruby3.1", &[], &["ruby", "-e", "puts 1"], false),
            ("/usr/bin/busybox", &[], &["busybox", "httpd", "-f"], true),
            ("/usr/bin/busybox", &[], &["httpd", "-f"], true),
            ("/tmp/x/bb", &["busybox"], &["httpd", "-f"], true),
            ("/usr/bin/busybox", &[], &["busybox", "wget", "http://x"], false),
            ("/usr/bin/node", &[], &["node", "--max-old-space-size=4096", "/usr/lib/node_modules/http-server/bin/http-server"], true),
            ("/usr/bin/node", &[], &["node", "-r", "ts-node/register", "node_modules/serve/build/main.js"], true),
            ("/usr/bin/node", &[], &["node", "build.js", "serve"], false),
            ("/usr/lib/jvm/java-17/bin/java", &[], &["java", "-cp", "x", "org.apache.catalina.startup.Bootstrap", "start"], true),
            ("/usr/lib/jvm/java-17/bin/java", &[], &["java", "-jar", "app.jar"], false),
        ];
        for (exe, content, argv, want) in table {
            let mut e = exec(exe, argv);
            e.content = content.iter().map(|c| c.to_string()).collect();
            let got = evaluate(
                r,
                &ExecView {
                    exec: &e,
                    ancestors: &[],
                },
            );
            assert_eq!(got.is_some(), *want, "{exe} {argv:?}: {got:?}");
        }
    }

    #[test]
    fn argv_syntax() {
        let syntax = ArgvSyntax {
            flags: "bB".into(),
            values: "mcX".into(),
            long_values: vec!["--opt".into()],
            long: [("--module".to_string(), 'm')].into_iter().collect(),
            ends: "mc".into(),
        };
        let args = |v: &[&str]| v.iter().map(|a| Bytes::from(*a)).collect::<Vec<_>>();
        let a = args(&["-B", "--opt", "v", "-X", "a b", "-bmmod", "x", "y"]);
        let p = parse_argv(&syntax, &a);
        assert_eq!(p.options, vec![('X', &b"a b"[..]), ('m', &b"mod"[..])]);
        assert_eq!(p.operand, None);
        assert_eq!(join(p.rest), b"x y");
        let a = args(&["--module=srv", "z"]);
        assert_eq!(parse_argv(&syntax, &a).options, vec![('m', &b"srv"[..])]);
        let a = args(&["-b", "script.py", "-m", "srv"]);
        let p = parse_argv(&syntax, &a);
        assert_eq!(p.operand, Some(&b"script.py"[..]));
        assert!(p.options.is_empty());
        let a = args(&["--", "-m"]);
        assert_eq!(parse_argv(&syntax, &a).operand, Some(&b"-m"[..]));
        // A value option at the end has an empty value; nothing panics.
        let a = args(&["-m"]);
        assert_eq!(parse_argv(&syntax, &a).options, vec![('m', &b""[..])]);
    }
}
