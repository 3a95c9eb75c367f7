//! Recipes: loading Jibril-format YAML files (built-in ones are embedded in the binary), and
//! matching exec events against them.

mod matcher;
mod model;

use std::fmt;
use std::path::{Path, PathBuf};

pub use matcher::{evaluate as matcher_evaluate, ExecView, Match};
pub use model::*;

/// Recipe files embedded at build time from `recipes/`.
pub const BUILTIN: &[(&str, &str)] = &[(
    "recipes/webserver_exec.yaml",
    include_str!("../../recipes/webserver_exec.yaml"),
)];

/// Recipe (and config) files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A YAML file that could not be loaded: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    /// 1-based; `None` when the error is not tied to a position (I/O).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn io(file: &Path, e: impl fmt::Display) -> LoadError {
        LoadError {
            file: file.display().to_string(),
            line: None,
            column: None,
            message: e.to_string(),
        }
    }

    /// Turns a serde_norway error into file:line:column + message (path inside the document
    /// kept, position suffix removed).
    pub fn from_yaml(file: &str, e: &serde_norway::Error) -> LoadError {
        let mut message = e.to_string();
        let (line, column) = match e.location() {
            Some(loc) => {
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.rfind(&suffix) {
                    message.replace_range(i..i + suffix.len(), "");
                }
                (Some(loc.line()), Some(loc.column()))
            }
            None => (None, None),
        };
        LoadError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// Reads a YAML file with a size bound, naming the file in errors.
pub fn read_yaml_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?;
    if meta.is_dir() {
        return Err(LoadError::io(path, "is a directory"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::io(
            path,
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| LoadError::io(path, e))
}

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

/// Parses the text of one recipe file (a YAML list of recipes).
pub fn parse(file: &str, text: &[u8]) -> Result<Vec<Recipe>, LoadError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(LoadError {
            file: file.to_string(),
            line: None,
            column: None,
            message: "empty file: expected a YAML list of recipes".into(),
        });
    }
    serde_norway::from_slice::<Vec<Recipe>>(text).map_err(|e| LoadError::from_yaml(file, &e))
}

impl RecipeSet {
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
            let text = read_yaml_file(&file)?;
            let recipes = parse(&file.display().to_string(), &text)?;
            let mut names = std::collections::HashSet::new();
            for recipe in recipes {
                if !names.insert(recipe.name.clone()) {
                    let line = find_name_line(&text, &recipe.name);
                    return Err(LoadError {
                        file: file.display().to_string(),
                        line,
                        column: line.map(|_| 1),
                        message: format!("duplicate recipe name {:?} in this file", recipe.name),
                    });
                }
                self.add(LoadedRecipe {
                    recipe,
                    origin: Origin::File(file.clone()),
                });
            }
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
        if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) && p.is_file() {
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
