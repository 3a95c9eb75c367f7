//! The checker: a pure function of (records, recipes, allowlist) → findings, fed one record at a
//! time so that a live `guard run` and `guard check` on its trace reach the same result, and so
//! that memory follows the live processes, not the length of the trace.

use std::collections::HashMap;
use std::rc::Rc;

use serde::Serialize;

use std::path::Path;

use crate::event::{join, Attempt, Bytes, EndEvent, ExecEvent, ExitStatus, Image};
use crate::policy::config::{Allowance, Config};
use crate::policy::recipe::{
    evaluate_with, identify, identity_key, ExecView, Identity, Importance, Recipe, RecipeSet,
    TimesKind,
};

/// At most this many executables' identities are kept (then the cache starts afresh).
const IDENTITY_CACHE: usize = 16_384;
use crate::time::Date;
use crate::trace::{Integrity, Record, TraceError, TraceReader};

/// Hashes pids, the keys of the process table (three lookups per exec of a trace, millions in
/// a large one): one multiplication instead of SipHash, keyed per run so that a crafted trace
/// cannot put its pids in one bucket.
#[derive(Clone, Copy)]
struct PidHash(u64);

impl PidHash {
    fn new() -> PidHash {
        use std::hash::BuildHasher;
        PidHash(std::collections::hash_map::RandomState::new().hash_one(0u8))
    }
}

impl std::hash::BuildHasher for PidHash {
    type Hasher = PidHasher;
    fn build_hasher(&self) -> PidHasher {
        PidHasher(self.0)
    }
}

struct PidHasher(u64);

impl std::hash::Hasher for PidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Folded multiply (the high and low halves of a 128-bit product, mixed).
        let p = u128::from(self.0 ^ u64::from(n)) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A link of the process tree: who forked whom, with the image the parent ran at that moment.
struct Node {
    /// The process (a forked child that did not exec runs its parent's image).
    pid: u32,
    image: Rc<Image>,
    up: Option<Rc<Node>>,
}

struct Proc {
    image: Rc<Image>,
    lineage: Option<Rc<Node>>,
}

/// A process as the report shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub exe: Bytes,
    pub argv: Vec<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Bytes>,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Bytes>,
    pub time: String,
    /// The GitHub Actions step (`GITHUB_ACTION`) it ran in, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<Bytes>,
    /// The container it ran in, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Ancestors, nearest first, up to the traced root.
    pub ancestry: Vec<Ancestor>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: Bytes,
    pub argv: Vec<Bytes>,
}

/// A finding about the guard itself: the evidence it relies on was altered or is incomplete.
/// Never allowlisted, always critical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuardKind {
    /// The trace was truncated or edited after it was written.
    TraceAltered,
    /// The host watcher stopped without sealing its trace.
    WatcherStopped,
    /// A trace of `guard run` ends without its seal.
    TraceIncomplete,
    /// The watcher's trace is sealed, but the kernel dropped events.
    EventsLost,
    /// Something the verdict depends on was changed by the build: the post step's program,
    /// script or loader environment, the watcher's sealed policy or trace, or the watcher itself
    /// (killed, frozen, impersonated).
    VerdictTampered,
}

impl GuardKind {
    pub const ALL: [GuardKind; 5] = [
        GuardKind::TraceAltered,
        GuardKind::WatcherStopped,
        GuardKind::TraceIncomplete,
        GuardKind::EventsLost,
        GuardKind::VerdictTampered,
    ];

    /// Its id in every report (`trace_altered`).
    pub fn as_str(self) -> &'static str {
        match self {
            GuardKind::TraceAltered => "trace_altered",
            GuardKind::WatcherStopped => "watcher_stopped",
            GuardKind::TraceIncomplete => "trace_incomplete",
            GuardKind::EventsLost => "events_lost",
            GuardKind::VerdictTampered => "verdict_tampered",
        }
    }

    pub fn from_name(name: &str) -> Option<GuardKind> {
        GuardKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What a finding is about: a recipe's detection, or the guard's own evidence. Written as its
/// id (`webserver_exec`, `trace_altered`) in every report.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A recipe matched an exec: the recipe's kind.
    Recipe(String),
    Guard(GuardKind),
}

impl Kind {
    pub fn as_str(&self) -> &str {
        match self {
            Kind::Recipe(kind) => kind,
            Kind::Guard(g) => g.as_str(),
        }
    }
}

/// A kind by its id: a guard kind's id is that kind, any other a recipe's.
impl From<&str> for Kind {
    fn from(id: &str) -> Kind {
        match GuardKind::from_name(id) {
            Some(g) => Kind::Guard(g),
            None => Kind::Recipe(id.to_string()),
        }
    }
}

impl From<String> for Kind {
    fn from(id: String) -> Kind {
        match GuardKind::from_name(&id) {
            Some(g) => Kind::Guard(g),
            None => Kind::Recipe(id),
        }
    }
}

impl From<GuardKind> for Kind {
    fn from(g: GuardKind) -> Kind {
        Kind::Guard(g)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One detection.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The recipe's kind (`webserver_exec`), or the guard's (`trace_altered`).
    pub recipe: Kind,
    /// The recipe's name (usually the kind).
    pub name: String,
    pub importance: Importance,
    /// The allowlist entry's reason when it allowed this exec (then the finding does not fail).
    pub allowed: Option<String>,
    /// Set when only an expired allowlist entry matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_expired: Option<String>,
    /// Why it matched: name, arguments, content.
    pub evidence: Vec<String>,
    /// 1 + the matching execs the recipe's `times` limits folded into this finding.
    pub count: u64,
    /// `--mode enforce` stopped it: the exec was refused (see `attempt`) or the process killed
    /// before the program ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Set when the exec did not happen: its error (and whether it was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// The exec that matched; `null` for a finding about the guard itself (a trace altered, a
    /// watcher stopped).
    pub process: Option<ProcessInfo>,
}

impl Finding {
    /// A critical finding about the guard itself (its evidence tampered with or lost): no
    /// process, never allowlisted.
    pub fn guard(kind: GuardKind, message: String) -> Finding {
        Finding {
            recipe: Kind::Guard(kind),
            name: kind.as_str().to_string(),
            importance: Importance::Critical,
            allowed: None,
            allow_expired: None,
            evidence: vec![message],
            count: 1,
            blocked: false,
            attempt: None,
            process: None,
        }
    }

    pub fn failing(&self) -> bool {
        self.allowed.is_none()
    }

    /// About the guard itself, not an exec.
    pub fn guard_kind(&self) -> Option<GuardKind> {
        match self.recipe {
            Kind::Guard(g) => Some(g),
            Kind::Recipe(_) => None,
        }
    }

    /// The verdict of this finding alone in `mode`.
    pub fn verdict(&self, mode: Mode) -> Verdict {
        Verdict::of(self.failing(), mode)
    }

    /// For an exec that did not run as asked: what happened instead (refused, killed before it
    /// ran, failed). Plain text without attacker-controlled parts.
    pub fn outcome(&self) -> Option<String> {
        match (&self.attempt, self.blocked) {
            (Some(a), true) => Some(format!(
                "BLOCKED: the exec was refused ({}) before the program ran (--mode enforce)",
                a.error
            )),
            (None, true) => Some(
                "BLOCKED: killed at its exec stop, before the program ran an instruction (--mode enforce)"
                    .into(),
            ),
            (Some(a), false) => Some(format!(
                "ATTEMPTED: the exec failed ({}); the program did not run",
                a.error
            )),
            (None, false) => None,
        }
    }
}

/// Counters over everything the checker saw.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub execs: u64,
    pub forks: u64,
    pub exits: u64,
    /// Events the source knows it missed.
    pub lost: u64,
    /// Records with fields that could not be read.
    pub partial: u64,
    /// Matching execs folded into an earlier finding by a `times` limit.
    pub suppressed: u64,
    /// Execs that did not happen (failed or refused), when attempts were traced.
    pub attempts: u64,
    /// Execs refused (or killed at their exec stop) by `--mode enforce`.
    pub blocked: u64,
    /// Executables read to fingerprint them (each at most once per run: the rest came from the
    /// cache), the bytes read and the time it took.
    pub fingerprint_reads: u64,
    pub fingerprint_bytes: u64,
    pub fingerprint_micros: u64,
}

/// A process the command left running when it exited.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Outlived {
    pub pid: u32,
    pub exe: Bytes,
    pub argv: Vec<Bytes>,
}

/// Everything the checker concluded.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub stats: Stats,
    pub findings: Vec<Finding>,
    /// The traced command's status, when the trace saw it end.
    pub status: Option<ExitStatus>,
    pub outlived: Vec<Outlived>,
}

/// What makes findings fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Findings that are not allowlisted make the exit status non-zero.
    Fail,
    /// Report only.
    Warn,
    /// `guard run`: refuse a matching exec before it happens (the caller sees `EACCES`) and
    /// let the build go on; findings fail as in `fail`. Elsewhere the same as `fail`.
    Enforce,
}

impl Mode {
    /// Every mode, by the name the command line and the Action's input use.
    pub const NAMES: [(&'static str, Mode); 3] = [
        ("fail", Mode::Fail),
        ("warn", Mode::Warn),
        ("enforce", Mode::Enforce),
    ];

    /// Whether failing findings make the exit status non-zero.
    pub fn fails(self) -> bool {
        matches!(self, Mode::Fail | Mode::Enforce)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fail => "fail",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// A mode by name, in any case.
    fn from_str(s: &str) -> Result<Mode, String> {
        let lower = s.trim().to_ascii_lowercase();
        Mode::NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("{s:?} is not a mode (fail, warn or enforce)"))
    }
}

/// The result of a check in a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No failing finding.
    Pass,
    /// Failing findings, in warn mode: reported, not failed.
    Warn,
    /// Failing findings in fail (or enforce) mode.
    Fail,
}

impl Verdict {
    /// `fail` when something fails in a failing mode.
    pub fn of(failing: bool, mode: Mode) -> Verdict {
        match (failing, mode.fails()) {
            (false, _) => Verdict::Pass,
            (true, true) => Verdict::Fail,
            (true, false) => Verdict::Warn,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

impl Outcome {
    pub fn failing(&self) -> usize {
        self.findings.iter().filter(|f| f.failing()).count()
    }

    /// The verdict in `mode`: `fail` when a failing finding exists in a failing mode.
    pub fn verdict(&self, mode: Mode) -> Verdict {
        Verdict::of(self.failing() > 0, mode)
    }
}

/// (recipe index, limit index, allowance class, scope key).
type LimitKey = (usize, usize, i64, Vec<u8>);

/// Feeds records, returns findings.
pub struct Checker<'a> {
    recipes: Vec<&'a Recipe>,
    config: &'a Config,
    today: Date,
    procs: HashMap<u32, Proc, PidHash>,
    /// (recipe index, limit index, allowance class, scope key) → (findings so far, index of the last one).
    limits: HashMap<LimitKey, (u64, usize)>,
    outlived_pids: Vec<u32>,
    outcome: Outcome,
    /// [`identity_key`] → the exec's identity for each recipe.
    identities: HashMap<Vec<u8>, Rc<Vec<Identity>>>,
    /// The buffer [`identity_key`] writes into.
    key: Vec<u8>,
}

impl<'a> Checker<'a> {
    pub fn new(recipes: &'a RecipeSet, config: &'a Config, today: Date) -> Checker<'a> {
        Checker {
            recipes: recipes.evaluated().collect(),
            config,
            today,
            procs: HashMap::with_hasher(PidHash::new()),
            limits: HashMap::new(),
            outlived_pids: Vec::new(),
            identities: HashMap::new(),
            key: Vec::new(),
            outcome: Outcome {
                stats: Stats::default(),
                findings: Vec::new(),
                status: None,
                outlived: Vec::new(),
            },
        }
    }

    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Exec(e) => self.exec(e),
            Record::Attempt(e) => self.attempt(e),
            Record::Fingerprint(f) => {
                let stats = &mut self.outcome.stats;
                stats.fingerprint_reads += 1;
                stats.fingerprint_bytes += f.bytes;
                stats.fingerprint_micros += f.micros;
            }
            Record::Process(p) => {
                let lineage = self.lineage_from_parent(p.ppid);
                self.procs.entry(p.pid).or_insert(Proc {
                    image: Rc::new(Image::of(p)),
                    lineage,
                });
            }
            Record::Fork(f) => {
                self.outcome.stats.forks += 1;
                let parent = self
                    .procs
                    .get(&f.ppid)
                    .map(|p| (p.image.clone(), p.lineage.clone()));
                let (image, lineage) = match parent {
                    Some((image, up)) => (
                        image.clone(),
                        Some(Rc::new(Node {
                            pid: f.ppid,
                            image,
                            up,
                        })),
                    ),
                    // A parent we never saw exec (the root before its exec, or an attach).
                    None => (Rc::new(Image::new(f.ppid, b"", &[], None)), None),
                };
                self.procs.insert(f.pid, Proc { image, lineage });
            }
            Record::Exit(x) => {
                self.outcome.stats.exits += 1;
                self.procs.remove(&x.pid);
                // A `times_per_proc` scope ends with its process: a later process that reuses
                // the pid is another scope.
                if !self.limits.is_empty() {
                    let pid = x.pid.to_string().into_bytes();
                    let recipes = &self.recipes;
                    self.limits.retain(|(ri, li, _, key), _| {
                        recipes[*ri].times[*li].kind != TimesKind::TimesPerProc || *key != pid
                    });
                }
            }
            Record::End(end) => self.end(end),
            Record::Header(_) | Record::Seal(_) => {}
        }
    }

    fn lineage_from_parent(&self, ppid: u32) -> Option<Rc<Node>> {
        self.procs.get(&ppid).map(|p| {
            Rc::new(Node {
                pid: ppid,
                image: p.image.clone(),
                up: p.lineage.clone(),
            })
        })
    }

    /// A critical finding about the guard itself: the evidence it relies on was altered or is
    /// incomplete (`trace_altered`, `watcher_stopped`, `trace_incomplete`, `events_lost`). It always
    /// fails.
    pub fn critical(&mut self, kind: GuardKind, message: String) {
        self.outcome.findings.push(Finding::guard(kind, message));
    }

    pub fn add_lost(&mut self, lost: u64) {
        self.outcome.stats.lost += lost;
    }

    fn end(&mut self, end: &EndEvent) {
        self.outcome.status = Some(end.status);
        self.outlived_pids = end.outlived.clone();
    }

    fn exec(&mut self, e: &ExecEvent) {
        self.outcome.stats.execs += 1;
        if e.partial {
            self.outcome.stats.partial += 1;
        }
        if e.blocked {
            self.outcome.stats.blocked += 1;
        }
        let lineage = self.lineage_of(e);
        let image = Rc::new(Image::of(e));
        self.procs.insert(
            e.pid,
            Proc {
                image,
                lineage: lineage.clone(),
            },
        );
        self.evaluate(e, lineage);
    }

    /// An exec that did not happen: matched like an exec, the process keeps its image.
    fn attempt(&mut self, e: &ExecEvent) {
        self.outcome.stats.attempts += 1;
        if e.attempt.as_ref().is_some_and(|a| a.blocked) {
            self.outcome.stats.blocked += 1;
        }
        let lineage = self.lineage_of(e);
        self.evaluate(e, lineage);
    }

    fn lineage_of(&self, e: &ExecEvent) -> Option<Rc<Node>> {
        match self.procs.get(&e.pid) {
            Some(p) => p.lineage.clone(),
            // No fork seen (the root, or a source without fork events): use the parent we know.
            None => self.lineage_from_parent(e.ppid),
        }
    }

    /// Whether `--mode enforce` must refuse this exec (it matches a recipe and no allowlist
    /// entry allows it), judged with the ancestry known so far. `e` need not be recorded yet.
    pub fn refuses(&mut self, e: &ExecEvent) -> bool {
        let ids = self.identities(e);
        if ids.iter().all(Identity::is_none) {
            return false;
        }
        let (ancestors, _) = Self::ancestors(self.lineage_of(e));
        let refs: Vec<&Image> = ancestors.iter().map(|a| a.as_ref()).collect();
        let view = ExecView {
            exec: e,
            ancestors: &refs,
        };
        self.recipes.iter().zip(ids.iter()).any(|(recipe, id)| {
            evaluate_with(recipe, &view, id).is_some_and(|m| {
                !matches!(
                    self.config
                        .allowance(&recipe.name, &recipe.kind, e, &m.allow_path, self.today),
                    Allowance::Allowed { .. }
                )
            })
        })
    }

    /// Ancestors nearest first, with their pids; bounded by the lineage, but guarded against
    /// cycles from a corrupted trace all the same.
    fn ancestors(lineage: Option<Rc<Node>>) -> (Vec<Rc<Image>>, Vec<u32>) {
        let mut ancestors: Vec<Rc<Image>> = Vec::new();
        let mut pids: Vec<u32> = Vec::new();
        let mut cur = lineage;
        while let Some(node) = cur {
            if ancestors.len() >= 4096 {
                break;
            }
            ancestors.push(node.image.clone());
            pids.push(node.pid);
            cur = node.up.clone();
        }
        (ancestors, pids)
    }

    /// What the paths and content of an exec say, for each recipe. It is the same every time a
    /// program runs again: it is worked out once per executable (a build runs the same
    /// compilers thousands of times), and needs no ancestry.
    #[inline]
    fn identities(&mut self, e: &ExecEvent) -> Rc<Vec<Identity>> {
        // Into a buffer kept from exec to exec: a key is allocated only for a new entry.
        let mut key = std::mem::take(&mut self.key);
        identity_key(e, &mut key);
        if let Some(ids) = self.identities.get(&key) {
            let ids = ids.clone();
            self.key = key;
            return ids;
        }
        if self.identities.len() >= IDENTITY_CACHE {
            self.identities.clear();
        }
        let view = ExecView {
            exec: e,
            ancestors: &[],
        };
        let ids: Rc<Vec<Identity>> =
            Rc::new(self.recipes.iter().map(|r| identify(r, &view)).collect());
        self.identities.insert(key, ids.clone());
        ids
    }

    fn evaluate(&mut self, e: &ExecEvent, lineage: Option<Rc<Node>>) {
        let ids = self.identities(e);
        // An executable no recipe knows cannot match: its ancestry is not even looked at.
        if ids.iter().all(Identity::is_none) {
            return;
        }
        let (ancestors, pids) = Self::ancestors(lineage);
        let refs: Vec<&Image> = ancestors.iter().map(|a| a.as_ref()).collect();
        let view = ExecView {
            exec: e,
            ancestors: &refs,
        };

        for ri in 0..self.recipes.len() {
            let recipe = self.recipes[ri];
            let Some(m) = evaluate_with(recipe, &view, &ids[ri]) else {
                continue;
            };
            let allowance =
                self.config
                    .allowance(&recipe.name, &recipe.kind, e, &m.allow_path, self.today);
            // Repeats are folded only into a finding with the same allowance, so that an allowed
            // exec can never absorb (and hide) a failing one.
            // Likewise an exec that ran is never folded into one that was refused or failed.
            let allowed_by = match &allowance {
                Allowance::Allowed { index, .. } => *index as i64,
                Allowance::Expired { .. } | Allowance::None => -1,
            };
            let happened = match &e.attempt {
                None if e.blocked => 2,
                None => 0,
                Some(a) if a.blocked => 2,
                Some(_) => 1,
            };
            let class = allowed_by * 4 + happened;
            if let Some(target) = self.limited(ri, class, recipe, e, &refs) {
                self.outcome.findings[target].count += 1;
                self.outcome.stats.suppressed += 1;
                continue;
            }
            let (allowed, allow_expired) = match allowance {
                Allowance::Allowed { reason, .. } => (Some(reason), None),
                Allowance::Expired { index, reason, expired } => (
                    None,
                    Some(format!(
                        "allowlist entry allow[{index}] ({reason}) expired on {expired}: it no longer allows this"
                    )),
                ),
                Allowance::None => (None, None),
            };
            let finding = Finding {
                recipe: Kind::Recipe(recipe.kind.clone()),
                name: recipe.name.clone(),
                importance: recipe.importance,
                allowed,
                allow_expired,
                evidence: m.evidence,
                count: 1,
                blocked: e.blocked || e.attempt.as_ref().is_some_and(|a| a.blocked),
                attempt: e.attempt.clone(),
                process: Some(ProcessInfo {
                    pid: e.pid,
                    ppid: e.ppid,
                    exe: e.exe.clone(),
                    argv: e.argv.clone(),
                    cwd: e.cwd.clone(),
                    uid: e.uid,
                    script: e.script.clone(),
                    time: e.time.clone(),
                    step: e.step.clone(),
                    container: e.container.clone(),
                    ancestry: refs
                        .iter()
                        .zip(&pids)
                        .map(|(a, pid)| Ancestor {
                            pid: *pid,
                            exe: Bytes::from(a.exe()),
                            argv: a.argv(),
                        })
                        .collect(),
                }),
            };
            self.outcome.findings.push(finding);
            let index = self.outcome.findings.len() - 1;
            self.count_limits(ri, class, recipe, e, &refs, index);
        }
    }

    fn scope_key(kind: TimesKind, e: &ExecEvent, ancestors: &[&Image]) -> Vec<u8> {
        let parent = ancestors.first();
        match kind {
            TimesKind::TimesPerProc => e.pid.to_string().into_bytes(),
            TimesKind::TimesPerExe => e.exe.0.clone(),
            TimesKind::TimesPerCmd => join(&e.argv),
            TimesKind::TimesPerParentProc => e.ppid.to_string().into_bytes(),
            TimesKind::TimesPerParentExe => parent.map(|p| p.exe().to_vec()).unwrap_or_default(),
            TimesKind::TimesPerFullAncestry => {
                let mut key = e.exe.0.clone();
                for a in ancestors {
                    key.push(0);
                    key.extend_from_slice(a.exe());
                }
                key
            }
            // One checker sees one host.
            TimesKind::TimesPerHostname | TimesKind::TimesPerHost | TimesKind::TimesInTotal => {
                Vec::new()
            }
        }
    }

    /// When a limit of the recipe is already reached for this exec, the finding to fold it into.
    fn limited(
        &self,
        ri: usize,
        class: i64,
        recipe: &Recipe,
        e: &ExecEvent,
        ancestors: &[&Image],
    ) -> Option<usize> {
        for (li, limit) in recipe.times.iter().enumerate() {
            let key = (ri, li, class, Self::scope_key(limit.kind, e, ancestors));
            if let Some(&(n, last)) = self.limits.get(&key) {
                if n >= limit.max {
                    return Some(last);
                }
            }
        }
        None
    }

    fn count_limits(
        &mut self,
        ri: usize,
        class: i64,
        recipe: &Recipe,
        e: &ExecEvent,
        ancestors: &[&Image],
        index: usize,
    ) {
        for (li, limit) in recipe.times.iter().enumerate() {
            let key = (ri, li, class, Self::scope_key(limit.kind, e, ancestors));
            let slot = self.limits.entry(key).or_insert((0, index));
            slot.0 += 1;
            slot.1 = index;
        }
    }

    /// The findings. Processes that outlived the command are shown as they are at the end of
    /// the trace (a background job's exec after the command exited included); those that
    /// exited meanwhile are not listed.
    pub fn finish(mut self) -> Outcome {
        for pid in std::mem::take(&mut self.outlived_pids) {
            if let Some(p) = self.procs.get(&pid) {
                self.outcome.outlived.push(Outlived {
                    pid,
                    exe: Bytes::from(p.image.exe()),
                    argv: p.image.argv(),
                });
            }
        }
        self.outcome
    }
}

/// What reading a trace through the checker established.
pub struct Checked {
    pub outcome: Outcome,
    pub integrity: Integrity,
    pub notes: Vec<String>,
    pub command: Option<Vec<Bytes>>,
}

/// Reads a trace through the checker. Evidence that was altered, or a watcher that stopped
/// without sealing its trace, becomes a critical finding: never a clean verdict.
pub fn check_trace(
    trace: &Path,
    recipes: &RecipeSet,
    config: &Config,
    watcher_last_seen: Option<&str>,
) -> Result<Checked, TraceError> {
    check_trace_as_of(trace, recipes, config, watcher_last_seen, Date::today())
}

/// [`check_trace`], judging allowlist expiry dates as of `today` (the Action: the day its `pre`
/// step recorded, which no later step can turn back).
pub fn check_trace_as_of(
    trace: &Path,
    recipes: &RecipeSet,
    config: &Config,
    watcher_last_seen: Option<&str>,
    today: Date,
) -> Result<Checked, TraceError> {
    let mut reader = TraceReader::open(trace)?;
    let command = reader.header().command.clone();
    let from_watcher = reader.header().watcher == "watcher";
    let mut checker = Checker::new(recipes, config, today);
    while let Some(record) = reader.next_record()? {
        checker.observe(record);
    }
    let last_time = reader.last_time().to_string();
    let integrity = reader
        .integrity()
        .cloned()
        .unwrap_or(Integrity::Unsealed { torn: false });
    let notes = recipes.notes();
    let shown = trace.display();
    match &integrity {
        Integrity::Sealed { lost } => {
            checker.add_lost(*lost);
            if *lost > 0 {
                checker.critical(
                    GuardKind::EventsLost,
                    format!(
                        "{lost} event(s) lost: {shown} is sealed, but the watcher could not receive every event of the host (its buffer overflowed, ENOBUFS, or the kernel's sequence numbers skipped); an exec among them is unknown"
                    ),
                );
            }
        }
        Integrity::Altered { reason } => checker.critical(
            GuardKind::TraceAltered,
            format!("trace altered: {shown}: {reason}; its records cannot be trusted"),
        ),
        Integrity::Unsealed { torn } if from_watcher => checker.critical(
            GuardKind::WatcherStopped,
            format!(
                "watcher stopped at {}: {shown} was never sealed{} — the watcher was killed or crashed during the job, and what ran after that is unknown",
                watcher_last_seen.unwrap_or(&last_time),
                if *torn { " and its last line is torn" } else { "" }
            ),
        ),
        // A trace of `guard run` without its seal: guard was killed, the disk filled up, or
        // the file was cut. What it holds is checked, but it is not a clean verdict.
        Integrity::Unsealed { torn } => checker.critical(
            GuardKind::TraceIncomplete,
            format!(
                "{shown} is not sealed{} (last record at {last_time}): guard did not finish writing it, or it was cut; the records present were checked, what followed is unknown",
                if *torn { " and its last line is torn" } else { "" }
            ),
        ),
    }
    Ok(Checked {
        outcome: checker.finish(),
        integrity,
        notes,
        command,
    })
}
