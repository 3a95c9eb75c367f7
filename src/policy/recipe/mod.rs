//! Recipes: loading Jibril-format YAML files (built-in ones are embedded in the binary), and
//! matching exec events against them.
//!
//! Recipe files are untrusted input, loaded through [`crate::policy::yaml`]'s bounded loader;
//! compiled regexes stay within [`REGEX_FILE_BUDGET`] (see [`Pattern`]).

mod matcher;
mod model;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::policy::yaml::{check_yaml, read_yaml_file, LoadError};

pub use matcher::{
    evaluate as matcher_evaluate, evaluate_with, identify, identity_key, ExecView, Identity, Match,
};
pub use model::*;

/// Recipe files embedded at build time from `recipes/`.
pub const BUILTIN: &[(&str, &str)] = &[(
    "recipes/webserver_exec.yaml",
    include_str!("../../../recipes/webserver_exec.yaml"),
)];

/// Where a recipe came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin(&'static str),
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(p) => write!(f, "built-in {p}"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    pub origin: Origin,
}

/// The recipes in force: the built-in ones, then those added with `--recipes` (a recipe with the
/// same `name` as an earlier one replaces it).
#[derive(Clone, Debug, Default)]
pub struct RecipeSet {
    pub recipes: Vec<LoadedRecipe>,
}

/// Parses the text of one recipe file (a YAML list of recipes), within the bounds of
/// [`check_yaml`] and [`REGEX_FILE_BUDGET`]. A file without any recipe (empty, only comments,
/// `[]`) is an error: adding nothing is not what `--recipes FILE` asks for.
pub fn parse(file: &str, text: &[u8]) -> Result<Vec<Recipe>, LoadError> {
    let empty = text.iter().all(u8::is_ascii_whitespace);
    let text = check_yaml(file, text)?;
    let recipes = with_regex_budget(|| serde_norway::from_slice::<Option<Vec<Recipe>>>(text))
        .map_err(|e| LoadError::from_yaml(file, text, &e))?;
    match recipes {
        Some(recipes) if !recipes.is_empty() => Ok(recipes),
        _ => Err(LoadError {
            file: file.to_string(),
            line: None,
            column: None,
            message: if empty {
                "empty file: expected a YAML list of recipes".into()
            } else {
                "no recipe in this file: expected a YAML list of recipes".into()
            },
        }),
    }
}

impl RecipeSet {
    /// Notes about recipes that are loaded but not evaluated on exec events (disabled, or of
    /// a mechanism this guard does not watch).
    pub fn notes(&self) -> Vec<String> {
        self.recipes
            .iter()
            .filter_map(|r| {
                if !r.recipe.enabled {
                    return Some(format!("recipe {} ({}): disabled", r.recipe.name, r.origin));
                }
                r.recipe
                    .not_evaluated()
                    .map(|why| format!("recipe {} ({}): {why}", r.recipe.name, r.origin))
            })
            .collect()
    }

    pub fn builtin() -> RecipeSet {
        let mut set = RecipeSet::default();
        for (name, text) in BUILTIN {
            // The built-in recipes are validated by a unit test; failing here is a build defect.
            let recipes = parse(name, text.as_bytes()).expect("built-in recipes are valid");
            for recipe in recipes {
                set.add(LoadedRecipe {
                    recipe,
                    origin: Origin::Builtin(name),
                });
            }
        }
        set
    }

    fn add(&mut self, loaded: LoadedRecipe) {
        match self
            .recipes
            .iter_mut()
            .find(|r| r.recipe.name == loaded.recipe.name)
        {
            Some(slot) => *slot = loaded,
            None => self.recipes.push(loaded),
        }
    }

    /// Adds the recipes of a file, or of every `*.yaml`/`*.yml` file of a directory (sorted).
    pub fn load_path(&mut self, path: &Path) -> Result<(), LoadError> {
        for file in recipe_files(path)? {
            let text = read_yaml_file(&file, "recipe file")?;
            self.load_text(&file, &text)?;
        }
        Ok(())
    }

    /// Adds the recipes of one file's text; `file` names it in errors and reports (the Action
    /// loads sealed copies under the names of their origins).
    pub fn load_text(&mut self, file: &Path, text: &[u8]) -> Result<(), LoadError> {
        let recipes = parse(&file.display().to_string(), text)?;
        let mut names = std::collections::HashSet::new();
        for recipe in recipes {
            if !names.insert(recipe.name.clone()) {
                let line = find_name_line(text, &recipe.name);
                return Err(LoadError {
                    file: file.display().to_string(),
                    line,
                    column: line.map(|_| 1),
                    message: format!("duplicate recipe name {:?} in this file", recipe.name),
                });
            }
            self.add(LoadedRecipe {
                recipe,
                origin: Origin::File(file.to_path_buf()),
            });
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&LoadedRecipe> {
        self.recipes
            .iter()
            .find(|r| r.recipe.name == name)
            .or_else(|| self.recipes.iter().find(|r| r.recipe.kind == name))
    }

    /// The recipes that are evaluated on exec events: enabled, execution mechanism.
    pub fn evaluated(&self) -> impl Iterator<Item = &Recipe> {
        self.recipes
            .iter()
            .map(|r| &r.recipe)
            .filter(|r| r.enabled && r.not_evaluated().is_none())
    }
}

/// The line of the second `name: NAME` occurrence, to point at a duplicate.
fn find_name_line(text: &[u8], name: &str) -> Option<usize> {
    let text = String::from_utf8_lossy(text);
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start().trim_start_matches("- ");
        if let Some(v) = l.strip_prefix("name:") {
            if v.trim().trim_matches(|c| c == '"' || c == '\'') == name {
                seen += 1;
                if seen == 2 {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// The files a `--recipes PATH` names.
pub fn recipe_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| LoadError::io(path, e))? {
        let p = entry.map_err(|e| LoadError::io(path, e))?.path();
        // Anything but a directory: a FIFO or a dangling link named *.yaml is an error when it
        // is read, not a recipe file skipped silently.
        if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) && !p.is_dir() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::io(
            path,
            "directory holds no *.yaml or *.yml recipe file",
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::yaml::*;

    #[test]
    fn builtin_recipes_are_valid() {
        for (name, text) in BUILTIN {
            let recipes = parse(name, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!recipes.is_empty(), "{name}");
        }
        let set = RecipeSet::builtin();
        let r = &set.get("webserver_exec").unwrap().recipe;
        assert_eq!(r.tactic, "command_and_control");
        assert_eq!(r.technique, "application_layer_protocol");
        assert_eq!(r.subtechnique, "web_protocols");
        assert_eq!(r.importance, Importance::High);
        let ids: Vec<&str> = r.ext.references.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["TA0011", "T1071", "T1071.001"]);
        assert_eq!(r.ext.actions.ci_cd.len(), 3);
        assert_eq!(r.ext.actions.staging.len(), 3);
        assert_eq!(r.ext.actions.production.len(), 3);
    }

    fn err(yaml: &str) -> LoadError {
        parse("bad.yaml", yaml.as_bytes()).unwrap_err()
    }

    const HEAD: &str = "- kind: k\n  name: k\n  version: 1.0\n  description: d\n  breed: file_access\n  mechanism: execution\n  tactic: none\n  technique: none\n  importance: high\n  file_actions: execve\n";

    #[test]
    fn malformed_recipes_name_file_line_column_and_value() {
        let cases: &[(String, (usize, usize), &str)] = &[
            (format!("{HEAD}  bases:\n    - regex: '(unclosed'\n"), (12, 14), "(unclosed"),
            (format!("{HEAD}  bases: [{{base: nginx}}]\n  colour: red\n"), (12, 3), "unknown field `colour`"),
            (HEAD.replace("importance: high", "importance: hgh") + "  bases: [{base: x}]\n", (9, 15), "unknown variant `hgh`"),
            (format!("{HEAD}  bases: [{{base: nginx}}]\n  times:\n    - kind: times_per_galaxy\n      max: 1\n"), (13, 13), "times_per_galaxy"),
            (format!("{HEAD}  bases: [{{base: nginx}}]\n  times:\n    - kind: times_per_exe\n      max: 0\n"), (14, 12), "at least 1"),
            (format!("{HEAD}  bases: [{{base: a/b}}]\n"), (11, 18), "a/b"),
            (format!("{HEAD}  bases: [{{base: x}}]\n  x-guard:\n    commands:\n      - name: n\n        exe: [{{base: p}}]\n        args: '['\n"), (16, 15), "invalid regex"),
            (format!("{HEAD}  bases: [{{base: x}}]\n  x-guard:\n    colour: 1\n"), (13, 5), "unknown field `colour`"),
            (format!("{HEAD}  bases: [{{base: x}}]\n  arbitrary:\n    - how: XOR\n      items: []\n"), (13, 12), "XOR"),
            (HEAD.replace("file_actions: execve", "file_actions: explode") + "  bases: [{base: x}]\n", (10, 17), "explode"),
        ];
        for (yaml, (line, col), needle) in cases {
            let e = err(yaml);
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("bad.yaml:{line}:{col}: ")),
                "want {line}:{col}, got: {shown}"
            );
            assert!(shown.contains(needle), "want {needle:?} in: {shown}");
        }
        // Cross-field errors point at the recipe.
        let e = err(HEAD);
        assert!(e.to_string().contains("needs `bases`"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn malformed_fingerprints_and_argv_syntax_are_explained() {
        let x = |ext: &str| format!("{HEAD}  bases: [{{base: x}}]\n  x-guard:\n{ext}");
        let cases: &[(String, &str)] = &[
            (x("    fingerprints:\n      - name: a\n        strings: [abc]\n"), "6 to 256 bytes long: got \"abc\""),
            (x("    fingerprints:\n      - name: a\n"), "needs `strings`, `patterns`, `symbols` or `go_module`"),
            (x("    fingerprints:\n      - name: 'a b'\n        symbols: [main_x]\n"), "fingerprint `name`"),
            (x("    fingerprints:\n      - name: a\n        symbols: ['x y z w']\n"), "a symbol is a name"),
            (x("    fingerprints:\n      - name: a\n        patterns: ['(']\n"), "invalid regex"),
            (x("    fingerprints:\n      - {name: a, symbols: [abcd]}\n      - {name: a, symbols: [efgh]}\n"), "fingerprint \"a\" is declared twice"),
            (x("    commands:\n      - name: c\n        content: [nope]\n        args: x\n"), "names fingerprint \"nope\", which `x-guard.fingerprints` does not declare"),
            (x("    commands:\n      - name: c\n        exe: [{base: p}]\n        argv:\n          syntax: {values: m, ends: c}\n          options: {m: x}\n"), "`syntax.ends` letter 'c' must also be in `syntax.values`"),
            (x("    commands:\n      - name: c\n        exe: [{base: p}]\n        argv:\n          syntax: {values: m}\n          options: {q: x}\n"), "`options` key \"q\" must be one option letter listed in `syntax.values`"),
            (x("    commands:\n      - name: c\n        exe: [{base: p}]\n        argv:\n          syntax: {values: m, long: {server: m}}\n          options: {m: x}\n"), "long options such as --name: got \"server\""),
            (x("    commands:\n      - name: c\n        exe: [{base: p}]\n        argv:\n          syntax: {flags: m, values: m}\n          options: {m: x}\n"), "in both `syntax.flags` and `syntax.values`"),
            (x("    commands:\n      - name: c\n        exe: [{base: p}]\n        argv:\n          syntax: {values: m}\n"), "`argv` needs `options` or `operand`"),
        ];
        for (yaml, needle) in cases {
            let shown = err(yaml).to_string();
            assert!(shown.starts_with("bad.yaml:"), "no position: {shown}");
            assert!(shown.contains(needle), "want {needle:?} in: {shown}");
        }
    }

    #[test]
    fn unmodified_jibril_recipes_load() {
        // Shapes of public Jibril recipes: null times/arbitrary, file_actions as a string or a
        // pipe-joined string, no `enabled`, no `subtechnique`, dir-only bases, network keys.
        let yaml = r#"
- kind: data_encoder_exec
  name: data_encoder_exec
  enabled: false
  version: 1.0
  description: Data encoder execution
  documentation: |
    https://garnet.gitbook.io/jibril/detections/execution/data_encoder_exec
  breed: file_access
  mechanism: execution
  tactic: command_and_control
  technique: data_encoding
  subtechnique: none
  importance: high
  times:
    - kind: times_per_parent_proc
      max: 2
    - kind: times_per_full_ancestry
      max: 4
  arbitrary: []
  file_actions:
    - execve
  file_actions_how: any
  bases:
    - base: ascii85
    - regex: ^.*/base(16|32(hex|plain)?|58|64(mime|pem|plain|url)?|z)$
- kind: apt_privilege_escalation
  name: apt_privilege_escalation
  version: 1.0
  description: apt
  breed: file_access
  mechanism: execution
  tactic: privilege_escalation
  technique: abuse_elevation_control_mechanism
  subtechnique: none
  importance: critical
  times:
  arbitrary:
    - how: AND
      which: irrelevant
      items:
        - what: args
          which: pertinent
          pattern: .*APT::Update::Pre-Invoke::.*
        - what: parent_exe
          which: pertinent
          pattern: sudo
  file_actions: execve
  file_actions_how: any
  bases:
    - base: apt-get
- kind: reading_of_ssh_keys
  name: reading_of_ssh_keys
  enabled: true
  version: 1.0
  description: ssh keys
  breed: file_access
  mechanism: file_access
  tactic: credential_access
  technique: unsecured_credentials
  importance: medium
  file_actions: open|read
  file_actions_how: any
  bases:
    - dir: /etc/ssh
- kind: block_ip
  name: block_ip_1
  version: 1.0
  description: net
  breed: remote_domains
  mechanism: network_peers
  tactic: none
  technique: none
  subtechnique: ""
  importance: low
  times:
  remote_domains: [example.com]
  remote_domains_type: exact
  flow_actions: [egress]
  flow_actions_how: any
  arbitrary:
  reactions:
    - format: shell
      code: "true"
"#;
        let recipes = parse("jibril.yaml", yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recipes.len(), 4);
        assert!(!recipes[0].enabled);
        assert!(recipes[1].not_evaluated().is_none());
        assert_eq!(
            recipes[2].not_evaluated().as_deref(),
            Some("not evaluated: needs file events")
        );
        assert_eq!(
            recipes[3].not_evaluated().as_deref(),
            Some("not evaluated: needs network events")
        );
    }
}
