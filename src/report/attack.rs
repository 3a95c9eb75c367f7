//! MITRE ATT&CK for every medium: which of a recipe's references are its tactic, technique and
//! sub-technique (by id: `TA0011`, `T1071`, `T1071.001`), and each one's name and URL.
//!
//! The URL is built from the id, never taken from the recipe, so a link labelled ATT&CK always
//! leads to attack.mitre.org; the name is ATT&CK's own when the id is one we know, else the
//! reference's.

use std::borrow::Cow;

use crate::policy::recipe::{Recipe, Reference};

/// The level of an ATT&CK id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `TA0011`.
    Tactic,
    /// `T1071`.
    Technique,
    /// `T1071.001`.
    Subtechnique,
}

impl Level {
    /// The id's level, when it is an ATT&CK tactic, technique or sub-technique id.
    pub fn of(id: &str) -> Option<Level> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(n) = id.strip_prefix("TA") {
            return digits(n).then_some(Level::Tactic);
        }
        let t = id.strip_prefix('T')?;
        match t.split_once('.') {
            Some((a, b)) => (digits(a) && digits(b)).then_some(Level::Subtechnique),
            None => digits(t).then_some(Level::Technique),
        }
    }

    /// As a label: `Tactic`, `Technique`, `Sub-technique`.
    pub fn label(self) -> &'static str {
        match self {
            Level::Tactic => "Tactic",
            Level::Technique => "Technique",
            Level::Subtechnique => "Sub-technique",
        }
    }
}

/// ATT&CK's names of the ids the recipes use, and of every Enterprise tactic.
const NAMES: &[(&str, &str)] = &[
    ("TA0001", "Initial Access"),
    ("TA0002", "Execution"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0009", "Collection"),
    ("TA0010", "Exfiltration"),
    ("TA0011", "Command and Control"),
    ("TA0040", "Impact"),
    ("TA0042", "Resource Development"),
    ("TA0043", "Reconnaissance"),
    ("T1071", "Application Layer Protocol"),
    ("T1071.001", "Web Protocols"),
];

/// One ATT&CK tactic, technique or sub-technique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub level: Level,
    /// Only `T`, `A`, digits and a dot ([`Level::of`] checked it): safe in any medium as it is.
    pub id: &'a str,
    pub name: Cow<'a, str>,
}

impl<'a> Entry<'a> {
    /// An entry for an ATT&CK id (`None` for any other id), named by ATT&CK when we know the id,
    /// else by `name`.
    pub fn new(id: &'a str, name: &'a str) -> Option<Entry<'a>> {
        let level = Level::of(id)?;
        let name = match NAMES.iter().find(|(known, _)| *known == id) {
            Some((_, n)) => Cow::Borrowed(*n),
            None => Cow::Owned(name.split_whitespace().collect::<Vec<_>>().join(" ")),
        };
        Some(Entry { level, id, name })
    }

    /// Its page on attack.mitre.org.
    pub fn url(&self) -> String {
        match self.level {
            Level::Tactic => format!("https://attack.mitre.org/tactics/{}/", self.id),
            Level::Technique => format!("https://attack.mitre.org/techniques/{}/", self.id),
            Level::Subtechnique => format!(
                "https://attack.mitre.org/techniques/{}/",
                self.id.replace('.', "/")
            ),
        }
    }
}

/// A recipe's references sorted out: the first of each ATT&CK level, and the rest.
pub struct Mapping<'a> {
    pub tactic: Option<Entry<'a>>,
    pub technique: Option<Entry<'a>>,
    pub subtechnique: Option<Entry<'a>>,
    /// References that are not ATT&CK ids, or a second one of a level.
    pub other: Vec<&'a Reference>,
}

impl<'a> Mapping<'a> {
    pub fn of(recipe: &'a Recipe) -> Mapping<'a> {
        let mut m = Mapping {
            tactic: None,
            technique: None,
            subtechnique: None,
            other: Vec::new(),
        };
        for r in &recipe.ext.references {
            let Some(entry) = Entry::new(&r.id, &r.name) else {
                m.other.push(r);
                continue;
            };
            let slot = match entry.level {
                Level::Tactic => &mut m.tactic,
                Level::Technique => &mut m.technique,
                Level::Subtechnique => &mut m.subtechnique,
            };
            if slot.is_none() {
                *slot = Some(entry);
            } else {
                m.other.push(r);
            }
        }
        m
    }

    /// Each level with its entry, if any, and the recipe's own field for it (`command_and_control`),
    /// tactic first.
    pub fn levels<'r>(
        &'r self,
        recipe: &'r Recipe,
    ) -> [(Level, Option<&'r Entry<'a>>, &'r str); 3] {
        [
            (Level::Tactic, self.tactic.as_ref(), recipe.tactic.as_str()),
            (
                Level::Technique,
                self.technique.as_ref(),
                recipe.technique.as_str(),
            ),
            (
                Level::Subtechnique,
                self.subtechnique.as_ref(),
                recipe.subtechnique.as_str(),
            ),
        ]
    }

    /// Every ATT&CK id of the recipe (code scanning's `external/mitre-attack/…` tags).
    pub fn ids(recipe: &Recipe) -> impl Iterator<Item = &str> {
        recipe
            .ext
            .references
            .iter()
            .map(|r| r.id.as_str())
            .filter(|id| Level::of(id).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::recipe::RecipeSet;

    #[test]
    fn ids_levels_and_urls() {
        assert_eq!(Level::of("TA0011"), Some(Level::Tactic));
        assert_eq!(Level::of("T1071"), Some(Level::Technique));
        assert_eq!(Level::of("T1071.001"), Some(Level::Subtechnique));
        for not in [
            "CWE-78",
            "T",
            "TA",
            "T1071.",
            "T.1",
            "TA1.1",
            "T1071.001.1",
            "t1071",
        ] {
            assert_eq!(Level::of(not), None, "{not}");
        }
        let e = Entry::new("T1071.001", "ignored: ATT&CK's name wins").unwrap();
        assert_eq!(e.name, "Web Protocols");
        assert_eq!(e.url(), "https://attack.mitre.org/techniques/T1071/001/");
        let e = Entry::new("T1059", "Command and\n  Scripting Interpreter").unwrap();
        assert_eq!(e.name, "Command and Scripting Interpreter");
        assert_eq!(e.url(), "https://attack.mitre.org/techniques/T1059/");
        assert_eq!(
            Entry::new("TA0011", "").unwrap().url(),
            "https://attack.mitre.org/tactics/TA0011/"
        );
    }

    #[test]
    fn the_builtin_recipe_maps_to_its_own_urls() {
        let set = RecipeSet::builtin();
        let r = &set.get("webserver_exec").unwrap().recipe;
        let m = Mapping::of(r);
        assert!(m.other.is_empty());
        // The recipe's URLs are the ones built from the ids.
        for (_, entry, _) in m.levels(r) {
            let entry = entry.unwrap();
            let reference = r.ext.references.iter().find(|x| x.id == entry.id).unwrap();
            assert_eq!(entry.url(), reference.url);
            assert_eq!(entry.name, reference.name);
        }
        assert_eq!(
            Mapping::ids(r).collect::<Vec<_>>(),
            ["TA0011", "T1071", "T1071.001"]
        );
    }
}
