//! The sealed job: what the Action's `pre` step hands to the root watcher, and what the root side
//! makes of it before any build step runs.
//!
//! `pre` runs before every step of the job, so what it sees is trusted; everything after it is
//! not (a build step runs as the runner's user, can write `$GITHUB_ENV`, the action's files and
//! the runner's `node`, and may have sudo). So `pre` gathers, once, everything the verdict
//! depends on — the mode, the recipes and the allowlist as read from the job's commit, the
//! runner's worker, its `node`, the action's scripts, the loader environment, the GitHub
//! context — into a [`Job`], sent on the standard input of `sudo guard start --job -`. The root
//! side ([`seal`]) copies the guard binary into the root-owned state directory, records a hash
//! of every file the post step will run, puts read-only bind mounts over those the runner's user
//! could rewrite, and keeps the result ([`Session`]) in memory and in `session.json` (0600).
//!
//! Environment values are never kept: the loader variables are kept as hashes, and only the
//! proxy and certificate settings the API calls need are kept as values (root-only, handed to
//! the verified post step alone).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of [`Job`] (`v`).
pub const JOB_VERSION: u32 = 1;

/// The largest job document read from `pre`.
const JOB_MAX: u64 = 16 << 20;

/// The names of the variables that change what code the post step's `node`, the dynamic loader
/// or OpenSSL load. Every `LD_*` variable counts (the loader reads several), and these others.
const CODE_VARIABLES: &[&str] = &[
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_COMPILE_CACHE",
    "NODE_ICU_DATA",
    "NODE_PRESERVE_SYMLINKS",
    "NODE_REPL_EXTERNAL_MODULE",
    "OPENSSL_CONF",
    "OPENSSL_MODULES",
    "OPENSSL_ENGINES",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
];

/// The variables a step may add for its own later steps (setup actions do) and that the post
/// step does without: the door removes them from the post step's environment before the loader
/// reads it instead of refusing the step (see [`crate::watcher::door`]).
pub const DISARMED_VARIABLES: &[&str] = &["LD_LIBRARY_PATH"];

/// The proxy and certificate settings of the API calls, taken as `pre` saw them.
pub const API_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Whether the post step's environment must hold `name` exactly as `pre`'s did.
pub fn is_code_variable(name: &str) -> bool {
    name.starts_with("LD_") || CODE_VARIABLES.contains(&name)
}

/// The GitHub context variables `pre` keeps for the report (a step could change them through
/// `$GITHUB_ENV` afterwards).
pub const CONTEXT_VARIABLES: &[&str] = &[
    "GITHUB_WORKSPACE",
    "GITHUB_WORKFLOW_REF",
    "GITHUB_REPOSITORY",
    "GITHUB_SHA",
    "GITHUB_EVENT_NAME",
    "GITHUB_SERVER_URL",
    "GITHUB_API_URL",
    "GITHUB_RUN_ID",
    "GITHUB_JOB",
    "RUNNER_TEMP",
];

/// A file of the policy, as `pre` read it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Where it came from, as reports name it (`.github/webserver-exec-guard.yml@<sha>`, `input
    /// allowlist`).
    pub origin: String,
    pub text: String,
}

/// A policy file as `pre` read it, and its sealed copy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedSource {
    pub origin: String,
    pub text: String,
    pub seal: FileSeal,
}

/// How much of the runner user's root access is taken away for the rest of the job.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Lockdown {
    #[default]
    None,
    /// `disable-sudo: true`.
    Sudo,
    /// `disable-sudo-and-containers: true`: sudo and the container engines' sockets.
    SudoAndContainers,
}

/// The pull request the feedback goes to, as the event payload said at `pre`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub number: u64,
    pub head_sha: String,
}

/// What `pre` sends the root side (JSON on the standard input of `guard start --job -`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub v: u32,
    /// `fail` or `warn`.
    pub mode: String,
    /// Recipes added to the built-in ones, in order.
    #[serde(default)]
    pub recipes: Vec<Source>,
    /// The allowlist; none when there is none or it could not be read (`notes` says which).
    #[serde(default)]
    pub config: Option<Source>,
    /// What `pre` wants said in the job summary (an allowlist that could not be read…).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The runner's worker: the parent of every step's process.
    pub worker: u32,
    /// The `node` that ran `pre` (the runner's), which runs the post step too.
    pub node: PathBuf,
    /// The action's scripts directory (`dist/`).
    pub scripts: PathBuf,
    /// Follow every step with ptrace (input `ptrace`), not only the door.
    #[serde(default)]
    pub follow_steps: bool,
    /// Every [`is_code_variable`] and [`DISARMED_VARIABLES`] variable of `pre`'s environment.
    #[serde(default)]
    pub code_env: BTreeMap<String, String>,
    /// The [`API_VARIABLES`] of `pre`'s environment.
    #[serde(default)]
    pub api_env: BTreeMap<String, String>,
    /// The [`CONTEXT_VARIABLES`] of `pre`'s environment.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    #[serde(default)]
    pub pull_request: Option<PullRequest>,
    /// Inputs of the reports: a SARIF path, the sticky comment, the check run.
    #[serde(default)]
    pub sarif: Option<String>,
    #[serde(default)]
    pub comment: bool,
    #[serde(default)]
    pub check_run: bool,
    #[serde(default)]
    pub lockdown: Lockdown,
    /// The container engines' sockets [`Lockdown::SudoAndContainers`] makes root's only.
    #[serde(default)]
    pub container_sockets: Vec<PathBuf>,
    /// The runner's user, whose rights [`Lockdown`] takes away.
    pub user: u32,
}

impl Job {
    /// Reads a job document (at most [`JOB_MAX`] bytes) and checks its version.
    pub fn read(mut from: impl Read) -> Result<Job, String> {
        let mut text = Vec::new();
        from.by_ref()
            .take(JOB_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| format!("cannot read the job: {e}"))?;
        if text.len() as u64 > JOB_MAX {
            return Err(format!("the job is larger than {JOB_MAX} bytes"));
        }
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let v: Version =
            serde_json::from_slice(&text).map_err(|e| format!("the job is not JSON: {e}"))?;
        if v.v != JOB_VERSION {
            return Err(format!(
                "job version {} (this guard reads {JOB_VERSION})",
                v.v
            ));
        }
        serde_json::from_slice(&text).map_err(|e| format!("the job is malformed: {e}"))
    }
}

/// A file whose bytes the verdict depends on, as it was when sealed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSeal {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// BLAKE3 of the content, hex.
    pub hash: String,
}

impl FileSeal {
    /// Seals the regular file at `path` (symlinks followed).
    pub fn of(path: &Path) -> Result<FileSeal, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let m = f
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !m.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        Ok(FileSeal {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            hash: hash_reader(f).map_err(|e| format!("{}: {e}", path.display()))?,
        })
    }

    /// What differs between this seal and the file now at `path` (none: `Ok`).
    pub fn verify(&self, path: &Path) -> Result<(), String> {
        let now = FileSeal::of(path)?;
        if (now.dev, now.ino) != (self.dev, self.ino) {
            return Err(format!(
                "{} was replaced (another file than the one sealed at pre)",
                self.path.display()
            ));
        }
        if now.size != self.size || now.hash != self.hash {
            return Err(format!(
                "{} was modified after pre (BLAKE3 {} instead of {})",
                self.path.display(),
                short(&now.hash),
                short(&self.hash)
            ));
        }
        Ok(())
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// BLAKE3 of everything `r` yields, hex.
pub fn hash_reader(mut r: impl Read) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// BLAKE3 of a value, hex (environment values are kept only this way).
pub fn hash_value(v: &[u8]) -> String {
    blake3::hash(v).to_hex().to_string()
}

/// The sealed job, as the root watcher keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// When `pre` started the watcher (RFC 3339): allowlist expiry dates are judged against it.
    pub started: String,
    pub mode: String,
    pub notes: Vec<String>,
    /// The root-owned copy of the guard binary that the post step runs.
    pub guard: FileSeal,
    /// The recipes and the allowlist, kept in memory, with their sealed copies on disk (an
    /// edited copy is a sign of tampering; the verdict uses the text kept here).
    pub recipes: Vec<SealedSource>,
    pub config: Option<SealedSource>,
    pub worker: u32,
    pub worker_starttime: u64,
    pub node: FileSeal,
    pub scripts_dir: PathBuf,
    pub scripts: Vec<FileSeal>,
    pub follow_steps: bool,
    /// Name → hash of the value, for the loader variables of `pre`'s environment.
    pub code_env: BTreeMap<String, String>,
    pub api_env: BTreeMap<String, String>,
    pub context: BTreeMap<String, String>,
    pub pull_request: Option<PullRequest>,
    pub sarif: Option<String>,
    pub comment: bool,
    pub check_run: bool,
    pub lockdown: Lockdown,
    pub container_sockets: Vec<PathBuf>,
    pub user: u32,
    /// Read-only bind mounts put in place (undone when the watcher ends).
    pub mounts: Vec<PathBuf>,
    /// The abstract socket name of the watcher's channel (without the leading NUL).
    pub channel: String,
}

/// The root side of `pre`: seals `job` into `state_dir` (root-owned, 0700) — copies of the
/// guard binary (`guard_exe`, the running one), of the recipes and of the allowlist, the hashes
/// of the runner's `node` and of the action's scripts, read-only bind mounts over those the
/// runner's user could rewrite.
pub fn seal(job: &Job, state_dir: &Path, guard_exe: &Path) -> Result<Session, String> {
    let mode = job.mode.as_str();
    if mode != "fail" && mode != "warn" {
        return Err(format!("job mode {mode:?} is not fail or warn"));
    }
    // The binary the post step runs, where only root can change it: a directory of its own,
    // 0755, so that the runner's user can run it (the state directory itself is 0700).
    let bin_dir = state_dir.with_file_name(format!(
        "{}-bin",
        state_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "webserver-exec-guard".into())
    ));
    let guard = copy_sealed(guard_exe, &bin_dir, "guard", 0o755)?;

    let policy_dir = state_dir.join("policy");
    let _ = std::fs::remove_dir_all(&policy_dir);
    std::fs::create_dir(&policy_dir).map_err(|e| format!("{}: {e}", policy_dir.display()))?;
    let mut recipes = Vec::new();
    for (i, r) in job.recipes.iter().enumerate() {
        let path = policy_dir.join(format!("recipe-{i:03}.yml"));
        write_private(&path, r.text.as_bytes())?;
        recipes.push(SealedSource {
            origin: r.origin.clone(),
            text: r.text.clone(),
            seal: FileSeal::of(&path)?,
        });
    }
    let config = match &job.config {
        Some(c) => {
            let path = policy_dir.join("allowlist.yml");
            write_private(&path, c.text.as_bytes())?;
            Some(SealedSource {
                origin: c.origin.clone(),
                text: c.text.clone(),
                seal: FileSeal::of(&path)?,
            })
        }
        None => None,
    };

    let node = FileSeal::of(&job.node)?;
    let scripts_dir = job
        .scripts
        .canonicalize()
        .map_err(|e| format!("{}: {e}", job.scripts.display()))?;
    let mut scripts = Vec::new();
    for entry in
        std::fs::read_dir(&scripts_dir).map_err(|e| format!("{}: {e}", scripts_dir.display()))?
    {
        let entry = entry.map_err(|e| format!("{}: {e}", scripts_dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "js") {
            scripts.push(FileSeal::of(&path)?);
        }
    }
    scripts.sort_by(|a, b| a.path.cmp(&b.path));
    if scripts.is_empty() {
        return Err(format!("no script in {}", scripts_dir.display()));
    }

    let mut mounts = Vec::new();
    for path in [job.node.clone(), scripts_dir.clone()] {
        let path = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !only_root_can_change(&path) {
            read_only_bind(&path)?;
            mounts.push(path);
        }
    }

    Ok(Session {
        started: crate::time::now(),
        mode: job.mode.clone(),
        notes: job.notes.clone(),
        guard,
        recipes,
        config,
        worker: job.worker,
        worker_starttime: super::starttime(job.worker).unwrap_or(0),
        node,
        scripts_dir,
        scripts,
        follow_steps: job.follow_steps,
        code_env: job
            .code_env
            .iter()
            .map(|(k, v)| (k.clone(), hash_value(v.as_bytes())))
            .collect(),
        api_env: job
            .api_env
            .iter()
            .filter(|(k, _)| API_VARIABLES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        context: job
            .context
            .iter()
            .filter(|(k, _)| CONTEXT_VARIABLES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        pull_request: job.pull_request.clone(),
        sarif: job.sarif.clone(),
        comment: job.comment,
        check_run: job.check_run,
        lockdown: job.lockdown,
        container_sockets: job.container_sockets.clone(),
        user: job.user,
        mounts,
        channel: format!(
            "webserver-exec-guard/{}/{}",
            std::process::id(),
            hash_value(state_dir.as_os_str().as_encoded_bytes())
                .get(..16)
                .unwrap_or_default()
        ),
    })
}

impl Session {
    /// Re-hashes every sealed file: what differs since `pre` (empty: nothing).
    pub fn tampered_files(&self) -> Vec<String> {
        let mut why = Vec::new();
        let all = std::iter::once(&self.guard)
            .chain(self.recipes.iter().map(|s| &s.seal))
            .chain(self.config.iter().map(|s| &s.seal));
        for seal in all {
            if let Err(e) = seal.verify(&seal.path) {
                why.push(e);
            }
        }
        why
    }

    /// Undoes what [`seal`] put in place on the host: the bind mounts, and the guard's copy (a
    /// post step that runs it keeps running).
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.guard.path);
        if let Some(dir) = self.guard.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        for m in &self.mounts {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2(2) with a valid path; MNT_DETACH: a file still open or mapped
            // through the mount (the post step's node) does not keep it in place.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Copies `from` to `dir/name` (mode `mode`), `dir` made root-owned 0755; returns its seal.
fn copy_sealed(from: &Path, dir: &Path, name: &str, mode: u32) -> Result<FileSeal, String> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0 => {}
        Ok(_) => {
            return Err(format!(
                "{} exists but is not a root-owned directory that only root can write",
                dir.display()
            ))
        }
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut input = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::io::copy(&mut input, &mut out).map_err(|e| format!("{}: {e}", tmp.display()))?;
    drop(out);
    std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    FileSeal::of(&dest)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether nobody but root can change what `path` names: it and every directory above it are
/// owned by root and writable by nobody else (a directory with the sticky bit counts only for
/// entries owned by root, which is what `path` is checked for).
pub fn only_root_can_change(path: &Path) -> bool {
    let mut p = Some(path);
    let mut first = true;
    while let Some(at) = p {
        let Ok(m) = std::fs::symlink_metadata(at) else {
            return false;
        };
        let writable_by_others = m.mode() & 0o022 != 0;
        let sticky = m.mode() & 0o1000 != 0;
        if m.uid() != 0 || (writable_by_others && !(sticky && !first && m.is_dir())) {
            return false;
        }
        first = false;
        p = at.parent();
    }
    true
}

/// Puts a read-only bind mount of `path` over itself: no process can write it, rename it or
/// replace it through that path any more, whatever the permissions (a mount point cannot be
/// renamed or unlinked).
fn read_only_bind(path: &Path) -> Result<(), String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a NUL in the path", path.display()))?;
    // SAFETY: mount(2) with valid C strings and no data.
    let bind = unsafe {
        libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if bind != 0 {
        return Err(format!(
            "cannot bind-mount {} read-only: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above; remounting the new bind mount read-only.
    let ro = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        )
    };
    if ro != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: undoing the bind mount made above.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        return Err(format!(
            "cannot make the bind mount of {} read-only: {e}",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_variables_are_the_loaders_and_nodes() {
        for name in [
            "LD_PRELOAD",
            "LD_AUDIT",
            "LD_LIBRARY_PATH",
            "NODE_OPTIONS",
            "OPENSSL_CONF",
            "GCONV_PATH",
        ] {
            assert!(is_code_variable(name), "{name}");
        }
        // setup-node writes NODE_AUTH_TOKEN through $GITHUB_ENV: it loads no code.
        for name in [
            "NODE_AUTH_TOKEN",
            "PATH",
            "HOME",
            "XLD_PRELOAD",
            "ld_preload",
        ] {
            assert!(!is_code_variable(name), "{name}");
        }
    }

    #[test]
    fn a_job_of_another_version_or_shape_is_refused() {
        let e = Job::read(&br#"{"v":2}"#[..]).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = Job::read(&br#"{"v":1,"mode":"fail"}"#[..]).unwrap_err();
        assert!(e.contains("malformed"), "{e}");
        let e = Job::read(&b"\x1b[2J"[..]).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn a_seal_sees_a_changed_or_replaced_file() {
        let dir = std::env::temp_dir().join(format!("guard-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("post.js");
        std::fs::write(&f, "one").unwrap();
        let seal = FileSeal::of(&f).unwrap();
        assert_eq!(seal.verify(&f), Ok(()));
        // Same size, other bytes, same inode.
        std::fs::write(&f, "two").unwrap();
        let e = seal.verify(&f).unwrap_err();
        assert!(e.contains("modified after pre"), "{e}");
        // Same bytes, another file (the sealed one kept alive, so that its inode is not reused).
        std::fs::write(&f, "one").unwrap();
        std::fs::hard_link(&f, dir.join("kept")).unwrap();
        std::fs::write(dir.join("other"), "one").unwrap();
        std::fs::rename(dir.join("other"), &f).unwrap();
        let e = seal.verify(&f).unwrap_err();
        assert!(e.contains("replaced"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
