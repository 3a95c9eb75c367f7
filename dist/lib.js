'use strict';
// Finds the guard binary and hands each phase of the Action over to it.
//
// Plain CommonJS on Node's standard library only (Node 20 and 24). No logic of the
// guard lives here: the binary reads the runner's environment and file commands
// itself. This file only answers "which binary?" and then runs
// `<guard> action <phase>` with the same environment and inherited stdio.
//
// The post step runs only the binary pre sealed: the root-owned copy named by the
// state pre saved (STATE_guard), never one named by the environment, PATH or a
// build — a build step can set environment variables for later steps and write
// this directory (sealedGuard below). For pre and main, the lookup order (the
// first that works wins; every step that is skipped or fails says why in one
// `webserver-exec-guard: ...` line on stderr):
//   1. $WEBSERVER_EXEC_GUARD_BIN — an explicit path; if set it must be an
//      executable file, otherwise that is an error (no silent fallback).
//   2. dist/bin/guard-<platform>-<arch>, in Node's terms (guard-linux-x64).
//   3. The release asset of the action's own ref
//      ($GITHUB_SERVER_URL/$GITHUB_ACTION_REPOSITORY/releases/download/$GITHUB_ACTION_REF/guard-<platform>-<arch>),
//      accepted only if its SHA-256 is the one listed in dist/SHA256SUMS. It is
//      kept in a private directory under $RUNNER_TEMP (or the OS temp dir) for
//      the later phases and re-hashed before every use.
//   4. `cargo build --release --locked` in the action's root, then
//      target/release/guard (or $CARGO_TARGET_DIR/release/guard).

const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

const NAME = 'webserver-exec-guard';
const PHASES = ['pre', 'main', 'post'];
const MAX_REDIRECTS = 5;
const DOWNLOAD_TIMEOUT_MS = 60 * 1000;

const ACTION_ROOT = path.join(__dirname, '..');
const SUMS_FILE = path.join(__dirname, 'SHA256SUMS');

function assetName() {
  return `guard-${process.platform}-${process.arch}`;
}

function log(line) {
  process.stderr.write(`${NAME}: ${line}\n`);
}

// Workflow-command message escaping: `%` first, then CR and LF.
function escapeData(s) {
  return String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function isExecutableFile(p) {
  try {
    if (!fs.statSync(p).isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch (_) {
    return false;
  }
}

function errText(e) {
  return e && e.message ? e.message : String(e);
}

// Parses `sha256sum` output: `<64 hex>  <name>` (or `<64 hex> *<name>`, binary
// mode). Blank lines and `#` comments are ignored; anything else is an error, so
// a damaged file is never half-trusted.
function parseSums(text, file = 'SHA256SUMS') {
  const sums = new Map();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (!m) throw new Error(`${file} line ${i + 1} is malformed: ${JSON.stringify(line)}`);
    sums.set(m[2], m[1].toLowerCase());
  });
  return sums;
}

function sha256File(p) {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(p, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 16);
    let n;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

// A directory only we can write to, so that a verified binary cannot be swapped
// between hashing and exec (matters when the base is a shared /tmp).
function privateDir(dir) {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (e.code !== 'EEXIST') throw e;
  }
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(`${dir} is not a private directory of this user`);
  }
  return dir;
}

// GET with redirects (at most MAX_REDIRECTS, never https -> http) into `dest`,
// hashing while writing. One deadline for the whole download.
function download(url, dest) {
  return new Promise((resolve, reject) => {
    let done = false;
    let current = null;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (current) current.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(
      () => finish(new Error(`download timed out after ${DOWNLOAD_TIMEOUT_MS / 1000} s: ${url}`)),
      DOWNLOAD_TIMEOUT_MS,
    );

    const get = (u, hops, prevProtocol) => {
      let parsed;
      try {
        parsed = new URL(u);
      } catch (_) {
        return finish(new Error(`bad download URL: ${u}`));
      }
      const client = parsed.protocol === 'https:' ? https : parsed.protocol === 'http:' ? http : null;
      if (!client) return finish(new Error(`unsupported URL scheme ${parsed.protocol} in ${u}`));
      if (prevProtocol === 'https:' && parsed.protocol === 'http:') {
        return finish(new Error(`refusing redirect from https to http: ${u}`));
      }
      const req = client.get(parsed, { headers: { 'User-Agent': NAME, Accept: 'application/octet-stream' } }, (res) => {
        const status = res.statusCode;
        if ([301, 302, 303, 307, 308].includes(status)) {
          res.resume();
          const loc = res.headers.location;
          if (!loc) return finish(new Error(`HTTP ${status} without Location from ${u}`));
          if (hops >= MAX_REDIRECTS) return finish(new Error(`more than ${MAX_REDIRECTS} redirects from ${url}`));
          return get(new URL(loc, parsed).toString(), hops + 1, parsed.protocol);
        }
        if (status !== 200) {
          res.resume();
          return finish(new Error(`HTTP ${status} from ${u}`));
        }
        const hash = crypto.createHash('sha256');
        const out = fs.createWriteStream(dest, { mode: 0o600 });
        out.on('error', (e) => finish(new Error(`cannot write ${dest}: ${errText(e)}`)));
        res.on('error', (e) => finish(new Error(`download of ${u} failed: ${errText(e)}`)));
        res.on('aborted', () => finish(new Error(`download of ${u} was cut off`)));
        res.on('data', (chunk) => hash.update(chunk));
        res.pipe(out);
        // 'close', not 'finish': the descriptor must be closed before the file
        // is executed (ETXTBSY).
        out.on('close', () => {
          if (!res.complete) return finish(new Error(`download of ${u} was cut off`));
          finish(null, hash.digest('hex'));
        });
      });
      current = req;
      req.on('error', (e) => finish(new Error(`download of ${u} failed: ${errText(e)}`)));
    };
    get(url, 0, null);
  });
}

function unlinkQuiet(p) {
  try {
    fs.unlinkSync(p);
  } catch (_) {
    /* already gone */
  }
}

// Step 3. Resolves to {path, how} or throws an Error saying why (skips included).
async function fromRelease(env) {
  const repo = env.GITHUB_ACTION_REPOSITORY;
  const ref = env.GITHUB_ACTION_REF;
  if (!repo || !ref) throw new Error('release download skipped: GITHUB_ACTION_REPOSITORY or GITHUB_ACTION_REF not set');

  const name = assetName();
  let sums;
  try {
    sums = parseSums(fs.readFileSync(SUMS_FILE, 'utf8'), 'dist/SHA256SUMS');
  } catch (e) {
    throw new Error(`release download skipped: cannot read dist/SHA256SUMS: ${errText(e)}`);
  }
  const expected = sums.get(name);
  if (!expected) {
    // Nothing could verify it, so it is not fetched at all.
    throw new Error(`release download skipped: dist/SHA256SUMS lists no hash for ${name}`);
  }

  const base = (env.RUNNER_TEMP || os.tmpdir()).replace(/\/+$/, '');
  let dir;
  let cached = null;
  try {
    dir = privateDir(path.join(base, `${NAME}-bin`));
    cached = path.join(dir, name);
  } catch (e) {
    log(`no cache for the downloaded binary (${errText(e)}); downloading to a fresh directory`);
    dir = fs.mkdtempSync(path.join(base, `${NAME}-`));
  }

  if (cached && fs.existsSync(cached)) {
    const got = sha256File(cached);
    if (got === expected && isExecutableFile(cached)) return { path: cached, how: 'cache' };
    log(`cached ${cached} has SHA-256 ${got}, expected ${expected}; deleting it and downloading again`);
    unlinkQuiet(cached);
  }

  const serverUrl = (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, '');
  const url = `${serverUrl}/${repo}/releases/download/${encodeURI(ref)}/${name}`;
  const tmp = path.join(dir, `.${name}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.part`);
  let got;
  try {
    got = await download(url, tmp);
  } catch (e) {
    unlinkQuiet(tmp);
    throw e;
  }
  if (got !== expected) {
    unlinkQuiet(tmp);
    throw new Error(
      `refusing the downloaded ${name} from ${url}: its SHA-256 is ${got} but dist/SHA256SUMS says ${expected}`,
    );
  }
  fs.chmodSync(tmp, 0o755);
  const dest = cached || path.join(dir, name);
  fs.renameSync(tmp, dest);
  return { path: dest, how: 'download' };
}

// Step 4. cargo's stdout goes to our stderr: stdout carries workflow commands.
function fromCargo(env) {
  const res = childProcess.spawnSync('cargo', ['build', '--release', '--locked'], {
    cwd: ACTION_ROOT,
    env,
    stdio: ['ignore', process.stderr.fd, 'inherit'],
  });
  if (res.error) {
    const why = res.error.code === 'ENOENT' ? 'cargo not found on PATH' : errText(res.error);
    throw new Error(`build from source failed: ${why}`);
  }
  if (res.status !== 0) {
    const how = res.signal ? `was killed by ${res.signal}` : `exited with status ${res.status}`;
    throw new Error(`build from source failed: cargo build --release --locked ${how}`);
  }
  const targetDir = env.CARGO_TARGET_DIR ? path.resolve(ACTION_ROOT, env.CARGO_TARGET_DIR) : path.join(ACTION_ROOT, 'target');
  const bin = path.join(targetDir, 'release', 'guard');
  if (!isExecutableFile(bin)) throw new Error(`build from source failed: cargo succeeded but ${bin} is not an executable file`);
  return { path: bin, how: 'cargo' };
}

// Resolves to {path, how} with how ∈ env | bundled | cache | download | cargo,
// or rejects with an Error whose message lists why every step failed.
async function findGuard(env = process.env) {
  const explicit = env.WEBSERVER_EXEC_GUARD_BIN;
  if (explicit) {
    if (isExecutableFile(explicit)) return { path: explicit, how: 'env' };
    const why = fs.existsSync(explicit) ? 'is not an executable file' : 'does not exist';
    throw new Error(`WEBSERVER_EXEC_GUARD_BIN=${explicit} ${why}`);
  }

  const reasons = [];
  const skip = (why) => {
    log(why);
    reasons.push(why);
  };
  skip('WEBSERVER_EXEC_GUARD_BIN not set');

  const bundled = path.join(__dirname, 'bin', assetName());
  if (isExecutableFile(bundled)) return { path: bundled, how: 'bundled' };
  if (fs.existsSync(bundled)) {
    try {
      fs.chmodSync(bundled, 0o755);
      if (isExecutableFile(bundled)) return { path: bundled, how: 'bundled' };
    } catch (_) {
      /* reported below */
    }
    skip(`${bundled} is not an executable file`);
  } else {
    skip(`${bundled} not found`);
  }

  try {
    return await fromRelease(env);
  } catch (e) {
    skip(errText(e));
  }

  try {
    return fromCargo(env);
  } catch (e) {
    skip(errText(e));
  }

  throw new Error(`no guard binary for ${process.platform}-${process.arch}: ${reasons.join('; ')}`);
}

// The guard could not be run. Fatal only where the user asked for it.
function giveUp(phase, env, message) {
  const required = phase !== 'post' && String(env.INPUT_REQUIRE || '').trim().toLowerCase() === 'true';
  const kind = required ? 'error' : 'warning';
  process.stdout.write(`::${kind}::${escapeData(`${NAME}: ${message}`)}\n`);
  process.exit(required ? 1 : 0);
}

// The binary the post step runs: the copy pre sealed in a root-owned directory.
// Resolves to {path, how: 'sealed'}, or null when pre did not start the watcher
// (it said why); throws when the saved path is not a root-owned file that only
// root can change.
function sealedGuard(env) {
  if (env.STATE_started !== 'true') return null;
  const p = env.STATE_guard || '';
  if (!path.isAbsolute(p)) throw new Error(`the guard binary saved by pre is not an absolute path: ${JSON.stringify(p)}`);
  for (let at = p; ; at = path.dirname(at)) {
    const st = fs.statSync(at);
    // A sticky directory (/tmp) lets nobody but root rename or remove root's entries.
    const sticky = at !== p && st.isDirectory() && (st.mode & 0o1000) !== 0;
    if (st.uid !== 0 || ((st.mode & 0o022) !== 0 && !sticky)) {
      throw new Error(`${at} is not owned by root and writable by root only: refusing to run ${p}`);
    }
    if (at === path.dirname(at)) break;
  }
  return { path: p, how: 'sealed' };
}

// Entrypoint of dist/{pre,main,post}.js: `<guard> action <phase>`, same
// environment, inherited stdio; exits with its status (128+N for signal N).
async function run(phase) {
  if (!PHASES.includes(phase)) throw new Error(`unknown phase ${phase}`);
  const env = process.env;
  let guard;
  if (phase === 'post') {
    try {
      guard = sealedGuard(env);
    } catch (e) {
      process.stdout.write(`::error::${escapeData(`${NAME}: verdict_tampered: ${errText(e)}`)}\n`);
      return process.exit(1);
    }
    if (!guard) {
      log('the pre step did not start the watcher (its log says why): nothing to check');
      return process.exit(0);
    }
  } else {
    try {
      guard = await findGuard(env);
    } catch (e) {
      return giveUp(phase, env, errText(e));
    }
  }
  log(`running ${guard.path} (${guard.how}) action ${phase}`);

  // A cancelled job signals us: pass it on and keep waiting for the guard's status.
  // The handlers are in place before the spawn so that no signal can kill us
  // while the guard runs; they are dispatched from the event loop, by which time
  // `child` is set.
  let child = null;
  const forward = {};
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) {
    forward[sig] = () => {
      try {
        if (child) child.kill(sig);
      } catch (_) {
        /* already gone */
      }
    };
    process.on(sig, forward[sig]);
  }
  try {
    child = childProcess.spawn(guard.path, ['action', phase], { stdio: 'inherit', env });
  } catch (e) {
    // Most spawn failures arrive as 'error' below; some (ETXTBSY...) are thrown.
    return giveUp(phase, env, `cannot run ${guard.path}: ${errText(e)}`);
  }
  child.on('error', (e) => giveUp(phase, env, `cannot run ${guard.path}: ${errText(e)}`));
  child.on('exit', (code, signal) => {
    for (const sig of Object.keys(forward)) process.removeListener(sig, forward[sig]);
    if (signal) process.exit(128 + (os.constants.signals[signal] || 0));
    process.exit(code === null ? 1 : code);
  });
}

module.exports = { findGuard, sealedGuard, run, escapeData, parseSums, sha256File, assetName };
