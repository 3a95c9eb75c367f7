//! `disable-sudo` and `disable-sudo-and-containers`: once the watcher records, the runner's user
//! loses its root access for the rest of the job, so that no step can stop, freeze, trace or
//! read the watcher, or edit its state; the watcher gives it back when it ends (after the
//! verdict, at the end of the post step: the runner's own clean-up after post runs as that user
//! and may need it).
//!
//! - **sudo**: a rule that denies the user every command as every user and group
//!   (`USER ALL=(ALL:ALL) NOPASSWD: !ALL`: with `(ALL)` only, `sudo -g GROUP` would still be
//!   allowed by an `(ALL:ALL)` grant; without `NOPASSWD`, `sudo -n` would say that a password is
//!   required instead of refusing) is added last (`/etc/sudoers.d/zzzz-webserver-exec-guard`:
//!   sudoers applies the last rule that matches, files of `/etc/sudoers.d` are read in lexical
//!   order, and names with a `.` or ending in `~` are skipped), checked with `visudo -c`, and
//!   then tried: `sudo -n true` as the user must fail. Sudo then refuses with its own message.
//! - **containers**: a user who can reach a container engine's socket is root (a privileged
//!   container mounting `/`; harden-runner's disable-sudo bypass, CVE-2025-32955). The sockets
//!   of Docker, containerd, Podman and LXD that exist are made root's only (owner root, group
//!   root, mode 0600): processes that already run keep their group memberships, so the
//!   socket's group or mode must change, not the user's groups. Their owner and mode are put
//!   back at the end.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::session::Lockdown;

/// The drop-in that denies sudo (last in lexical order; no `.` or `~`, which sudo skips).
pub const SUDOERS_DROP_IN: &str = "/etc/sudoers.d/zzzz-webserver-exec-guard";

/// The container engines' sockets made root's only by `disable-sudo-and-containers` (those
/// that exist), unless the pre step's `WEBSERVER_EXEC_GUARD_CONTAINER_SOCKETS` names others
/// (colon-separated: a self-hosted runner's engine elsewhere).
pub const CONTAINER_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/var/lib/lxd/unix.socket",
];

/// What was changed, to be put back.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Applied {
    pub sudoers: Option<PathBuf>,
    /// Each socket with the owner, group and mode it had.
    pub sockets: Vec<(PathBuf, u32, u32, u32)>,
}

/// Takes the user's root access away as `lockdown` says.
pub fn apply(lockdown: Lockdown, user: u32, sockets: &[PathBuf]) -> Result<Applied, String> {
    let mut applied = Applied::default();
    if lockdown == Lockdown::None {
        return Ok(applied);
    }
    if user == 0 {
        return Err("disable-sudo: the job runs as root, whose rights cannot be taken away".into());
    }
    let name = user_name(user).ok_or_else(|| format!("disable-sudo: no user with uid {user}"))?;
    let rule = format!(
        "# Written by webserver-exec-guard (disable-sudo) for the rest of a job; removed when the job's watcher ends.\n{name} ALL=(ALL:ALL) NOPASSWD: !ALL\n"
    );
    let tmp = PathBuf::from(format!("{SUDOERS_DROP_IN}.tmp"));
    std::fs::write(&tmp, rule).map_err(|e| format!("disable-sudo: {}: {e}", tmp.display()))?;
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440));
    let checked = Command::new("/usr/sbin/visudo")
        .args(["-c", "-q", "-f"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .output();
    match checked {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "disable-sudo: visudo refused the rule: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("disable-sudo: cannot run /usr/sbin/visudo: {e}"));
        }
    }
    std::fs::rename(&tmp, SUDOERS_DROP_IN)
        .map_err(|e| format!("disable-sudo: {SUDOERS_DROP_IN}: {e}"))?;
    applied.sudoers = Some(PathBuf::from(SUDOERS_DROP_IN));
    if sudo_works_for(user) {
        release(&applied);
        return Err(format!(
            "disable-sudo: `sudo -n true` still works for {name} after {SUDOERS_DROP_IN} was added (a rule sudo reads after it?)"
        ));
    }
    if lockdown == Lockdown::SudoAndContainers {
        for socket in sockets {
            let Ok(m) = std::fs::symlink_metadata(socket) else {
                continue;
            };
            let c = std::ffi::CString::new(socket.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("{}: a NUL in the path", socket.display()))?;
            // SAFETY: lchown(2) with a valid path.
            if unsafe { libc::lchown(c.as_ptr(), 0, 0) } != 0 {
                let e = std::io::Error::last_os_error();
                release(&applied);
                return Err(format!(
                    "disable-sudo-and-containers: {}: {e}",
                    socket.display()
                ));
            }
            applied
                .sockets
                .push((socket.clone(), m.uid(), m.gid(), m.mode() & 0o7777));
            if let Err(e) = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            {
                release(&applied);
                return Err(format!(
                    "disable-sudo-and-containers: {}: {e}",
                    socket.display()
                ));
            }
        }
    }
    Ok(applied)
}

/// Gives back what [`apply`] took.
pub fn release(applied: &Applied) {
    if let Some(f) = &applied.sudoers {
        let _ = std::fs::remove_file(f);
    }
    for (socket, uid, gid, mode) in &applied.sockets {
        if let Ok(c) = std::ffi::CString::new(socket.as_os_str().as_encoded_bytes()) {
            // SAFETY: lchown(2) with a valid path.
            unsafe { libc::lchown(c.as_ptr(), *uid, *gid) };
        }
        let _ = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(*mode));
    }
}

/// Whether `sudo -n true` succeeds for the user (run as that user, its own groups).
fn sudo_works_for(user: u32) -> bool {
    let Some(gid) = primary_group(user) else {
        return true;
    };
    let name = user_name(user).unwrap_or_default();
    let Ok(cname) = std::ffi::CString::new(name) else {
        return true;
    };
    // `-g root` too: a grant with a group (`(ALL:ALL)`) is a second way in.
    [&["-n", "true"][..], &["-n", "-g", "root", "true"][..]]
        .iter()
        .any(|args| {
            let cname = cname.clone();
            let mut cmd = Command::new("/usr/bin/sudo");
            cmd.args(*args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: initgroups/setgid/setuid between fork and exec, in the child only.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::initgroups(cname.as_ptr(), gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(user) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.status().map(|s| s.success()).unwrap_or(true)
        })
}

fn user_name(user: u32) -> Option<String> {
    Some(nix::unistd::User::from_uid(user.into()).ok()??.name)
}

fn primary_group(user: u32) -> Option<u32> {
    Some(nix::unistd::User::from_uid(user.into()).ok()??.gid.as_raw())
}

/// The sockets `disable-sudo-and-containers` acts on: the pre step's list, else the known ones.
pub fn sockets_from(list: Option<&str>) -> Vec<PathBuf> {
    match list {
        Some(l) => l
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => CONTAINER_SOCKETS.iter().map(PathBuf::from).collect(),
    }
}

/// Whether `path` exists as a socket (for the summary).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
