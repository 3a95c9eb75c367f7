//! The built-in recipe's fingerprints against every executable of the machine: the web servers
//! (nginx, apache2, lighttpd, caddy) and the interpreters (python, php, busybox, java, node)
//! are recognised by content, and nothing else is — not guard itself, whose built-in recipe
//! quotes the very banners the fingerprints look for.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use guard::policy::recipe::RecipeSet;
use guard::sources::fingerprint::Fingerprinter;

/// Files that the content fingerprints with `match: true` may name: the servers themselves.
const SERVERS: [&str; 5] = ["nginx", "apache2", "httpd", "lighttpd", "caddy"];

fn executables() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Ok(jvms) = std::fs::read_dir("/usr/lib/jvm") {
        dirs.extend(jvms.flatten().map(|e| e.path().join("bin")));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(real) = std::fs::canonicalize(e.path()) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&real) else {
                continue;
            };
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 && seen.insert(real.clone())
            {
                out.push(real);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn only_servers_match_and_interpreters_are_identified() {
    let recipes = RecipeSet::builtin();
    let server_names: Vec<String> = recipes
        .evaluated()
        .flat_map(|r| r.ext.fingerprints.iter())
        .filter(|f| f.r#match)
        .map(|f| f.name.clone())
        .collect();
    let mut fp = Fingerprinter::new(&recipes);
    let files = executables();
    assert!(files.len() > 200, "only {} executables found", files.len());
    let mut identified: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let (mut bytes, mut micros) = (0u64, 0u64);
    for f in &files {
        let Ok(file) = File::open(f) else { continue };
        let (names, read) = fp.identify(&file, 0, &f.as_path().into());
        if let Some(r) = read {
            bytes += r.bytes;
            micros += r.micros;
        }
        if !names.is_empty() {
            identified.insert(f.clone(), names.to_vec());
        }
    }
    eprintln!(
        "{} executables fingerprinted: {} bytes read in {} ms; identified: {:?}",
        files.len(),
        bytes,
        micros / 1000,
        identified
    );
    // No false positive: a server fingerprint only on a server.
    for (path, names) in &identified {
        let base = path.file_name().unwrap().to_string_lossy();
        if names.iter().any(|n| server_names.contains(n)) {
            assert!(
                SERVERS.iter().any(|s| base.starts_with(s)),
                "{} matched server fingerprint(s) {names:?}",
                path.display()
            );
        }
    }
    // guard itself (whose built-in recipe quotes the banners) is nothing.
    let me = File::open(common::GUARD).unwrap();
    let (names, _) = fp.identify(&me, 0, &"guard".into());
    assert!(names.is_empty(), "guard identified as {names:?}");
    // What the machine's test command installs is recognised.
    let expect: &[(&str, &str)] = &[
        ("/usr/sbin/nginx", "nginx"),
        ("/usr/sbin/apache2", "apache-httpd"),
        ("/usr/sbin/lighttpd", "lighttpd"),
        ("/usr/bin/caddy", "caddy"),
        ("/usr/bin/busybox", "busybox"),
        ("/usr/bin/python3", "python"),
        ("/usr/bin/php", "php"),
        ("/usr/bin/java", "java"),
        ("/usr/bin/node", "node"),
    ];
    let mut checked = 0;
    for (path, name) in expect {
        let Ok(real) = std::fs::canonicalize(path) else {
            common::skip(
                "only_servers_match_and_interpreters_are_identified",
                path,
                common::package_of(path),
            );
            continue;
        };
        let got = identified.get(&real).cloned().unwrap_or_default();
        assert!(
            got.iter().any(|n| n == name),
            "{path} ({}) not identified as {name}: {got:?}",
            real.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "too few of the expected programs installed");
}

#[test]
fn a_script_quoting_the_banners_is_not_a_server() {
    // A shell script and a text file full of the banner texts: nothing (the fingerprints
    // want the C strings, NUL-delimited, that only the programs carry).
    let dir = std::env::temp_dir().join(format!("guard-fp-quote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: &Path = &dir.join("check.sh");
    std::fs::write(
        path,
        "#!/bin/sh\necho 'nginx version: nginx/1.22.1'\necho 'Apache/2.4.57 (Debian)' 'Server built: x'\necho 'lighttpd/1.4.69 (ssl) - a light and fast webserver' 'BusyBox v1.35'\n",
    )
    .unwrap();
    let mut fp = Fingerprinter::new(&RecipeSet::builtin());
    let (names, _) = fp.identify(&File::open(path).unwrap(), 0, &path.into());
    assert!(names.is_empty(), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
