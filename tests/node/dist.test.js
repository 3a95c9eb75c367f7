'use strict';
// Tests of dist/*.js: the four-step lookup of the guard binary and the hand-over
// to `guard action <phase>`. Each case runs a private copy of dist/ in a temp
// dir (so dist/bin and dist/SHA256SUMS can be faked) with an environment built
// from scratch (no GITHUB_*, INPUT_*, RUNNER_* leaking in from a real runner),
// fake guard binaries as shell scripts, a fake `cargo` first on PATH, and a
// release server on 127.0.0.1. Every child process has a timeout.
//
// Run: node --test tests/node/

const test = require('node:test');
const assert = require('node:assert');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const DIST = path.join(__dirname, '..', '..', 'dist');
const ASSET = `guard-${process.platform}-${process.arch}`;
const CHILD_TIMEOUT_MS = 20000;

// A fake guard: prints its arguments and an environment marker, then exits with `status`.
function fakeGuard(status, extra = '') {
  return [
    '#!/bin/sh',
    extra,
    'echo "fake-guard args: $*"',
    'echo "fake-guard marker: $GUARD_TEST_MARKER"',
    `exit ${status}`,
    '',
  ].join('\n');
}

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function writeExec(p, text) {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text, { mode: 0o755 });
}

// A temp action root holding a copy of dist/ (without bin/), a fake-cargo dir,
// and a RUNNER_TEMP. `cargo` defaults to one that records being called and fails.
function sandbox(t, { sums = '', cargo } = {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weg-dist-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const dist = path.join(root, 'dist');
  fs.mkdirSync(dist);
  for (const f of ['lib.js', 'pre.js', 'main.js', 'post.js']) fs.copyFileSync(path.join(DIST, f), path.join(dist, f));
  fs.writeFileSync(path.join(dist, 'SHA256SUMS'), sums);
  const fakebin = path.join(root, 'fakebin');
  const cargoMarker = path.join(root, 'cargo-called');
  writeExec(
    path.join(fakebin, 'cargo'),
    cargo || `#!/bin/sh\n: > '${cargoMarker}'\necho 'fake cargo: error: no Cargo.toml' >&2\nexit 101\n`,
  );
  const runnerTemp = path.join(root, 'runner-temp');
  fs.mkdirSync(runnerTemp);
  const env = {
    PATH: `${fakebin}:/usr/local/bin:/usr/bin:/bin`,
    HOME: root,
    RUNNER_TEMP: runnerTemp,
    GUARD_TEST_MARKER: 'marker-42',
  };
  return { root, dist, fakebin, cargoMarker, runnerTemp, env };
}

// Runs `node dist/<phase>.js` asynchronously (the release server lives in this
// process, so a synchronous spawn would deadlock) with a hard timeout.
function runPhase(sb, phase, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(process.execPath, [path.join(sb.dist, `${phase}.js`)], {
      cwd: sb.root,
      env: { ...sb.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node dist/${phase}.js timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, CHILD_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

// A release server on 127.0.0.1: /<repo>/releases/download/<ref>/<asset> answers
// with a redirect to /blob/<asset>, which serves `body`. Counts requests for the asset.
async function releaseServer(t, body) {
  const hits = { asset: 0, blob: 0, paths: [] };
  const server = http.createServer((req, res) => {
    hits.paths.push(req.url);
    if (req.url === `/owner/webserver-exec-guard/releases/download/v1/${ASSET}`) {
      hits.asset += 1;
      res.writeHead(302, { Location: `/blob/${ASSET}` });
      res.end();
    } else if (req.url === `/blob/${ASSET}`) {
      hits.blob += 1;
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(body);
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${server.address().port}`;
  const env = { GITHUB_SERVER_URL: url, GITHUB_ACTION_REPOSITORY: 'owner/webserver-exec-guard', GITHUB_ACTION_REF: 'v1' };
  return { url, hits, env };
}

function show(r) {
  return `status ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

test('escapeData escapes % first, then CR and LF', () => {
  const { escapeData } = require(path.join(DIST, 'lib.js'));
  assert.strictEqual(escapeData('100%\r\nx%0A'), '100%25%0D%0Ax%250A');
});

test('parseSums reads sha256sum output and ignores comments and blank lines', () => {
  const { parseSums } = require(path.join(DIST, 'lib.js'));
  const a = 'a'.repeat(64);
  const B = 'B'.repeat(64);
  const sums = parseSums(`# comment\n\n${a}  guard-linux-x64\n${B} *guard-linux-arm64\r\n`);
  assert.deepStrictEqual([...sums], [
    ['guard-linux-x64', a],
    ['guard-linux-arm64', 'b'.repeat(64)],
  ]);
  assert.throws(() => parseSums('nothex  guard-linux-x64\n'), /line 1 is malformed/);
  assert.strictEqual(parseSums(fs.readFileSync(path.join(DIST, 'SHA256SUMS'), 'utf8')).size, 0);
});

test('explicit WEBSERVER_EXEC_GUARD_BIN is used', async (t) => {
  const sb = sandbox(t);
  const bin = path.join(sb.root, 'my-guard');
  writeExec(bin, fakeGuard(0));
  const { findGuard } = require(path.join(sb.dist, 'lib.js'));
  assert.deepStrictEqual(await findGuard({ ...sb.env, WEBSERVER_EXEC_GUARD_BIN: bin }), { path: bin, how: 'env' });

  const r = await runPhase(sb, 'main', { WEBSERVER_EXEC_GUARD_BIN: bin });
  assert.strictEqual(r.status, 0, show(r));
  assert.match(r.stdout, /^fake-guard args: action main$/m);
  assert.match(r.stdout, /^fake-guard marker: marker-42$/m);
});

test('explicit WEBSERVER_EXEC_GUARD_BIN that does not exist is a clear error', async (t) => {
  const sb = sandbox(t);
  writeExec(path.join(sb.dist, 'bin', ASSET), fakeGuard(0)); // no silent fallback to it
  const missing = path.join(sb.root, 'no-such-guard');
  const { findGuard } = require(path.join(sb.dist, 'lib.js'));
  await assert.rejects(findGuard({ ...sb.env, WEBSERVER_EXEC_GUARD_BIN: missing }), (e) => {
    assert.match(e.message, /WEBSERVER_EXEC_GUARD_BIN/);
    assert.ok(e.message.includes(missing), e.message);
    assert.match(e.message, /does not exist/);
    return true;
  });
  const notExec = path.join(sb.root, 'not-exec');
  fs.writeFileSync(notExec, 'x', { mode: 0o644 });
  await assert.rejects(findGuard({ ...sb.env, WEBSERVER_EXEC_GUARD_BIN: notExec }), /not an executable file/);

  const r = await runPhase(sb, 'pre', { WEBSERVER_EXEC_GUARD_BIN: missing, INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.ok(r.stdout.startsWith('::error::webserver-exec-guard: WEBSERVER_EXEC_GUARD_BIN='), show(r));
  assert.doesNotMatch(r.stdout, /fake-guard/);
});

test('dist/bin/guard-<platform>-<arch> is used: args are `action pre`, env passed, status passed', async (t) => {
  const sb = sandbox(t);
  writeExec(path.join(sb.dist, 'bin', ASSET), fakeGuard(7));
  const r = await runPhase(sb, 'pre');
  assert.strictEqual(r.status, 7, show(r));
  assert.match(r.stdout, /^fake-guard args: action pre$/m);
  assert.match(r.stdout, /^fake-guard marker: marker-42$/m);
  assert.match(r.stderr, /^webserver-exec-guard: WEBSERVER_EXEC_GUARD_BIN not set$/m);
  assert.ok(!fs.existsSync(sb.cargoMarker), 'cargo must not run');

  const rp = await runPhase(sb, 'main');
  assert.strictEqual(rp.status, 7, show(rp));
  assert.match(rp.stdout, /^fake-guard args: action main$/m);
});

// The post step runs only the copy pre sealed (STATE_guard): never WEBSERVER_EXEC_GUARD_BIN,
// dist/bin, a download or cargo, which a build step can set or write.
test('post runs only the sealed binary, and only from a root-owned place', async (t) => {
  const sb = sandbox(t);
  writeExec(path.join(sb.dist, 'bin', ASSET), fakeGuard(7));
  const decoy = path.join(sb.root, 'decoy');
  writeExec(decoy, fakeGuard(9));

  // Not started by pre: nothing runs, nothing fails.
  const none = await runPhase(sb, 'post', { WEBSERVER_EXEC_GUARD_BIN: decoy, INPUT_REQUIRE: 'true' });
  assert.strictEqual(none.status, 0, show(none));
  assert.doesNotMatch(none.stdout, /fake-guard/);
  assert.match(none.stderr, /the pre step did not start the watcher/);

  const sealedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'guard-sealed-'));
  t.after(() => fs.rmSync(sealedDir, { recursive: true, force: true }));
  fs.chmodSync(sealedDir, 0o755);
  const sealed = path.join(sealedDir, 'guard');
  writeExec(sealed, fakeGuard(3));
  const state = { STATE_started: 'true', STATE_guard: sealed, WEBSERVER_EXEC_GUARD_BIN: decoy };
  if (process.getuid() === 0) {
    const r = await runPhase(sb, 'post', state);
    assert.strictEqual(r.status, 3, show(r));
    assert.match(r.stdout, /^fake-guard args: action post$/m);
    assert.match(r.stderr, /\(sealed\) action post/);
  }

  // A sealed path anyone could have replaced is refused, never run.
  fs.chmodSync(sealedDir, 0o777);
  const open = await runPhase(sb, 'post', state);
  assert.strictEqual(open.status, 1, show(open));
  assert.match(open.stdout, /^::error::webserver-exec-guard: verdict_tampered: .*writable by root only/m);
  assert.doesNotMatch(open.stdout, /fake-guard/);
  fs.chmodSync(sealedDir, 0o755);

  const relative = await runPhase(sb, 'post', { ...state, STATE_guard: 'guard' });
  assert.strictEqual(relative.status, 1, show(relative));
  assert.match(relative.stdout, /not an absolute path/);
});

test('release download with the right hash is used, then reused from the cache after re-hashing', async (t) => {
  const body = fakeGuard(5);
  const sb = sandbox(t, { sums: `# test\n${sha256(body)}  ${ASSET}\n${'0'.repeat(64)}  guard-other-arch\n` });
  const srv = await releaseServer(t, body);

  const r = await runPhase(sb, 'pre', srv.env);
  assert.strictEqual(r.status, 5, show(r));
  assert.match(r.stdout, /^fake-guard args: action pre$/m);
  assert.match(r.stderr, new RegExp(`${ASSET} not found`));
  assert.deepStrictEqual([srv.hits.asset, srv.hits.blob], [1, 1], 'one request, one redirect');
  const cached = path.join(sb.runnerTemp, 'webserver-exec-guard-bin', ASSET);
  assert.strictEqual(fs.statSync(cached).mode & 0o777, 0o755);
  assert.strictEqual(fs.statSync(path.dirname(cached)).mode & 0o777, 0o700);
  assert.deepStrictEqual(fs.readdirSync(path.dirname(cached)), [ASSET], 'no partial files left');

  // Later phase: no new download.
  const r2 = await runPhase(sb, 'main', srv.env);
  assert.strictEqual(r2.status, 5, show(r2));
  assert.match(r2.stdout, /^fake-guard args: action main$/m);
  assert.match(r2.stderr, /\(cache\) action main/);
  assert.deepStrictEqual([srv.hits.asset, srv.hits.blob], [1, 1]);

  // A tampered cache is never run: it is deleted and downloaded again.
  const marker = path.join(sb.root, 'tampered-ran');
  fs.writeFileSync(cached, `#!/bin/sh\n: > '${marker}'\nexit 0\n`);
  const r3 = await runPhase(sb, 'main', srv.env);
  assert.strictEqual(r3.status, 5, show(r3));
  assert.match(r3.stdout, /^fake-guard args: action main$/m);
  assert.match(r3.stderr, /cached .* has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}/);
  assert.ok(!fs.existsSync(marker), 'tampered cached binary must not run');
  assert.deepStrictEqual([srv.hits.asset, srv.hits.blob], [2, 2]);
});

test('release download with a wrong hash is refused and never run', async (t) => {
  const marker = path.join(os.tmpdir(), `weg-wrong-hash-ran-${process.pid}-${Date.now()}`);
  t.after(() => fs.rmSync(marker, { force: true }));
  const body = `#!/bin/sh\n: > '${marker}'\nexit 0\n`;
  const listed = 'f'.repeat(64);
  const sb = sandbox(t, { sums: `${listed}  ${ASSET}\n` });
  const srv = await releaseServer(t, body);

  const r = await runPhase(sb, 'pre', { ...srv.env, INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.ok(!fs.existsSync(marker), 'the unverified binary ran');
  assert.strictEqual(srv.hits.blob, 1);
  // Both hashes are named, in the step's log line and in the final error.
  const line = `its SHA-256 is ${sha256(body)} but dist/SHA256SUMS says ${listed}`;
  assert.ok(r.stderr.includes(line), show(r));
  assert.ok(r.stdout.includes(line), show(r));
  assert.match(r.stdout, /^::error::/);
  assert.ok(fs.existsSync(sb.cargoMarker), 'cargo is still tried as the last resort');
  // Nothing of the download is left behind.
  const dir = path.join(sb.runnerTemp, 'webserver-exec-guard-bin');
  assert.deepStrictEqual(fs.readdirSync(dir), []);
});

test('no hash listed for this platform: nothing is downloaded', async (t) => {
  const sb = sandbox(t, { sums: '# nothing released yet\n' });
  const srv = await releaseServer(t, fakeGuard(0));
  const r = await runPhase(sb, 'pre', { ...srv.env, INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.deepStrictEqual(srv.hits.paths, []);
  assert.match(r.stderr, new RegExp(`dist/SHA256SUMS lists no hash for ${ASSET}`));
});

test('release download that fails (HTTP 404) falls through to cargo', async (t) => {
  const body = fakeGuard(0);
  const sb = sandbox(t, { sums: `${sha256(body)}  ${ASSET}\n` });
  const srv = await releaseServer(t, body);
  const r = await runPhase(sb, 'pre', { ...srv.env, GITHUB_ACTION_REF: 'v9', INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.match(r.stderr, /HTTP 404 from http:\/\/127\.0\.0\.1:\d+\/owner\/webserver-exec-guard\/releases\/download\/v9\//);
  assert.ok(fs.existsSync(sb.cargoMarker));
});

test('cargo fallback: builds in the action root, cargo stdout kept off stdout', async (t) => {
  const sb = sandbox(t, {
    cargo: [
      '#!/bin/sh',
      '[ "$*" = "build --release --locked" ] || { echo "bad cargo args: $*" >&2; exit 2; }',
      'echo "cargo-stdout-noise"',
      'echo "cargo-stderr-noise" >&2',
      'pwd > cargo-cwd',
      'mkdir -p target/release',
      `cat > target/release/guard <<'EOF'\n${fakeGuard(0)}EOF`,
      'chmod 755 target/release/guard',
      'exit 0',
      '',
    ].join('\n'),
  });
  const r = await runPhase(sb, 'main');
  assert.strictEqual(r.status, 0, show(r));
  assert.match(r.stdout, /^fake-guard args: action main$/m);
  assert.doesNotMatch(r.stdout, /cargo-stdout-noise/);
  assert.match(r.stderr, /cargo-stdout-noise/);
  assert.match(r.stderr, /release download skipped: GITHUB_ACTION_REPOSITORY or GITHUB_ACTION_REF not set/);
  assert.strictEqual(fs.readFileSync(path.join(sb.root, 'cargo-cwd'), 'utf8').trim(), fs.realpathSync(sb.root));
  assert.match(r.stderr, /target\/release\/guard \(cargo\) action main/);
});

test('nothing works: ::error:: and exit 1 when required, ::warning:: and exit 0 otherwise', async (t) => {
  const sb = sandbox(t);
  const required = await runPhase(sb, 'pre', { INPUT_REQUIRE: 'true' });
  assert.strictEqual(required.status, 1, show(required));
  const lines = required.stdout.split('\n').filter(Boolean);
  assert.strictEqual(lines.length, 1, show(required));
  assert.match(lines[0], /^::error::webserver-exec-guard: no guard binary for /);
  assert.match(lines[0], /cargo build --release --locked exited with status 101/);
  // One line on stderr per step that was skipped or failed.
  assert.match(required.stderr, /^webserver-exec-guard: WEBSERVER_EXEC_GUARD_BIN not set$/m);
  assert.match(required.stderr, new RegExp(`^webserver-exec-guard: .*dist/bin/${ASSET} not found$`, 'm'));
  assert.match(required.stderr, /^webserver-exec-guard: release download skipped: /m);
  assert.match(required.stderr, /^webserver-exec-guard: build from source failed: /m);

  for (const [phase, env] of [
    ['pre', {}],
    ['main', { INPUT_REQUIRE: 'false' }],
  ]) {
    const r = await runPhase(sb, phase, env);
    assert.strictEqual(r.status, 0, `${phase} ${JSON.stringify(env)}: ${show(r)}`);
    assert.match(r.stdout, /^::warning::webserver-exec-guard: no guard binary for /);
    assert.doesNotMatch(r.stdout, /::error::/);
  }

  // cargo missing from PATH altogether.
  const r = await runPhase(sb, 'main', { PATH: '/nonexistent', INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.match(r.stdout, /cargo not found on PATH/);
});

test('the ::error:: message is escaped (% CR LF)', async (t) => {
  const sb = sandbox(t);
  const r = await runPhase(sb, 'pre', { WEBSERVER_EXEC_GUARD_BIN: '/no/such/100%\nguard\r', INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.strictEqual(r.stdout, '::error::webserver-exec-guard: WEBSERVER_EXEC_GUARD_BIN=/no/such/100%25%0Aguard%0D does not exist\n');
});

test('a guard killed by a signal gives 128+N', async (t) => {
  const sb = sandbox(t);
  writeExec(path.join(sb.dist, 'bin', ASSET), '#!/bin/sh\nkill -TERM $$\nsleep 5\n');
  const r = await runPhase(sb, 'main');
  assert.strictEqual(r.status, 128 + os.constants.signals.SIGTERM, show(r));
  writeExec(path.join(sb.dist, 'bin', ASSET), '#!/bin/sh\nkill -KILL $$\nsleep 5\n');
  const r2 = await runPhase(sb, 'pre');
  assert.strictEqual(r2.status, 128 + os.constants.signals.SIGKILL, show(r2));
});

test('SIGTERM to node is forwarded to the guard, and its status still comes back', async (t) => {
  const sb = sandbox(t);
  const ready = path.join(sb.root, 'ready');
  writeExec(
    path.join(sb.dist, 'bin', ASSET),
    `#!/bin/sh\ntrap 'echo got-term; exit 42' TERM\n: > '${ready}'\ni=0\nwhile [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\nexit 9\n`,
  );
  const child = childProcess.spawn(process.execPath, [path.join(sb.dist, 'main.js')], {
    env: sb.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  t.after(() => clearTimeout(timer));
  const deadline = Date.now() + CHILD_TIMEOUT_MS;
  while (!fs.existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGTERM');
  const status = await new Promise((resolve) => child.on('exit', (code, sig) => resolve(code === null ? sig : code)));
  assert.strictEqual(status, 42, stdout);
  assert.match(stdout, /got-term/);
});

test('a guard that cannot be started (ETXTBSY) is handled like a missing one', async (t) => {
  const sb = sandbox(t);
  const bin = path.join(sb.dist, 'bin', ASSET);
  writeExec(bin, fakeGuard(0));
  const fd = fs.openSync(bin, 'r+'); // open for writing: exec fails with ETXTBSY
  t.after(() => fs.closeSync(fd));
  const r = await runPhase(sb, 'pre', { INPUT_REQUIRE: 'true' });
  assert.strictEqual(r.status, 1, show(r));
  assert.match(r.stdout, /^::error::webserver-exec-guard: cannot run .*ETXTBSY/);
  const r2 = await runPhase(sb, 'main');
  assert.strictEqual(r2.status, 0, show(r2));
  assert.match(r2.stdout, /^::warning::webserver-exec-guard: cannot run .*ETXTBSY/);
});
