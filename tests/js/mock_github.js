#!/usr/bin/env node
// A local stand-in for the GitHub REST API, for tests of the pull request feedback (src/github/api.rs)
// and of the repository files read at the job's commit (src/github/contents.rs).
//
// It serves the few endpoints the guard uses, statefully and in memory, and checks every request
// the way GitHub would: the path is matched against GitHub's official OpenAPI description
// (@octokit/openapi, dereferenced api.github.com description), the path and query parameters are
// validated against the matching operation's parameters (unknown query parameters included) and
// the JSON body against its requestBody schema (Ajv), the Authorization header must carry the test
// token. Invalid requests are answered 422 (401 for a bad token) and recorded.
//
// Usage: node tests/js/mock_github.js [--token T] [--prefix /api/v3] [--pr N] [--seed N]
//          [--decoy-marker] [--login NAME] [--forbid-writes]
//          [--files DIR] [--commit SHA] [--inline-limit BYTES] [--contents-status CODE]
//          [--tamper PATH] [--submodule PATH=URL]
//   --token T         the token clients must send (default: env MOCK_GITHUB_TOKEN or "test-token")
//   --prefix P        serve the API under path P, as GitHub Enterprise Server does (/api/v3)
//   --pr N            the pull request whose comments are pre-seeded (default 7)
//   --seed N          unrelated comments pre-seeded on that pull request (default 35)
//   --decoy-marker    also seed a comment by another user that carries the sticky marker
//   --login NAME      act as a personal token of user NAME (GET /user answers it, comments are
//                     NAME's); default: an installation token ("github-actions[bot]", GET /user 403)
//   --echo-auth       quote the Authorization header received in 401 answers (GitHub does not; it
//                     lets a test prove that a client keeps tokens out of its messages)
//   --forbid-writes   POST and PATCH answer 403 "Resource not accessible by integration", like the
//                     read-only token of a pull request from a fork (also env MOCK_GITHUB_MODE=read-only)
//
// The repository's files, for GET /repos/{owner}/{repo}/contents/{path} and
// GET /repos/{owner}/{repo}/git/blobs/{file_sha} (any owner and repo), answered as GitHub documents:
// a directory is an array of entries, or one object with `entries` under the `object` media type
// (Accept: application/vnd.github.object+json); a submodule is listed as a "file"; a symlink to a
// file of the repository is answered with that file, any other with the symlink itself; a file
// over the inline limit comes without content under the `object` media type and as 403 "too_large"
// under the default one. The mock checks its own answers against the description's schemas and
// records a mismatch as invalid.
//   --files DIR       the tree of the commit: DIR's files, directories and symbolic links (served as
//                     git stores them: a symlink entry whose blob is the link's target); default none
//   --commit SHA      the commit those files are at (default 3dca65fa3e8d4b3da3f3d056c59aee1c50f41390);
//                     another ref answers 404 "No commit found for the ref …", as GitHub does. A
//                     contents request without `ref` is recorded as invalid: it reads the default
//                     branch, not the job's commit
//   --inline-limit N  files larger than N bytes come without content (`content: ""`, `encoding:
//                     "none"`), as GitHub sends files over 1 MB; get them from the blob endpoint
//                     (default 1048576)
//   --contents-status CODE
//                     every contents and blob request answers CODE (403: "Resource not accessible by
//                     integration", like a token without `contents: read`; 500: "Server Error"; …)
//   --tamper PATH     the file PATH (relative to DIR) is served with one byte changed but the blob id
//                     of its real bytes, as a corrupted or altered answer would be (contents and blob
//                     endpoints)
//   --submodule PATH=URL
//                     add a submodule entry at PATH (repeatable)
//
// The first line on stdout is the port it listens on (127.0.0.1, port chosen by the system), printed
// once the OpenAPI description is loaded. GET /__state (no prefix, no token) returns
// {comments, check_runs, requests, invalid}: comments per "owner/repo#number", check runs with their
// accumulated annotations and the annotation count of every request, every request (method, path,
// query, status, operation; for the contents and blob endpoints also `repo_path`, and `media`:
// "object" or "json"), and the requests rejected as invalid with the validation errors.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const MARKER = '<!-- webserver-exec-guard:sticky -->';

function parseArgs(argv) {
  const o = {
    token: process.env.MOCK_GITHUB_TOKEN || 'test-token',
    prefix: '',
    pr: 7,
    seed: 35,
    decoy: false,
    login: null,
    forbidWrites: process.env.MOCK_GITHUB_MODE === 'read-only',
    echoAuth: false,
    files: null,
    commit: '3dca65fa3e8d4b3da3f3d056c59aee1c50f41390',
    inlineLimit: 1048576,
    contentsStatus: 0,
    tamper: [],
    submodules: [],
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--token') o.token = next();
    else if (a === '--prefix') o.prefix = next().replace(/\/+$/, '');
    else if (a === '--pr') o.pr = Number(next());
    else if (a === '--seed') o.seed = Number(next());
    else if (a === '--decoy-marker') o.decoy = true;
    else if (a === '--login') o.login = next();
    else if (a === '--forbid-writes') o.forbidWrites = true;
    else if (a === '--echo-auth') o.echoAuth = true;
    else if (a === '--files') o.files = next();
    else if (a === '--commit') o.commit = next();
    else if (a === '--inline-limit') o.inlineLimit = Number(next());
    else if (a === '--contents-status') o.contentsStatus = Number(next());
    else if (a === '--tamper') o.tamper.push(next());
    else if (a === '--submodule') {
      const v = next();
      const eq = v.indexOf('=');
      if (eq < 1) throw new Error(`--submodule needs PATH=URL, not ${v}`);
      o.submodules.push([v.slice(0, eq), v.slice(eq + 1)]);
    }
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const opts = parseArgs(process.argv);

// --- the OpenAPI description: keep what we need, let the rest be collected -----------------------

const OPERATIONS = (() => {
  const spec = require(path.join(
    __dirname, 'node_modules', '@octokit', 'openapi', 'generated', 'api.github.com.deref.json'));
  const ops = [];
  for (const [template, item] of Object.entries(spec.paths)) {
    const segments = template.split('/').slice(1);
    const literal = segments.filter((s) => !s.startsWith('{')).length;
    for (const method of ['get', 'post', 'patch', 'put', 'delete']) {
      const op = item[method];
      if (!op) continue;
      const parameters = [...(item.parameters || []), ...(op.parameters || [])];
      // A parameter marked x-multi-segment (a file path) spans several segments.
      const multi = new Set(parameters.filter((p) => p.in === 'path' && p['x-multi-segment']).map((p) => p.name));
      const names = [];
      const re = new RegExp('^/' + segments.map((s) => {
        if (s.startsWith('{')) {
          const name = s.slice(1, -1);
          names.push(name);
          return multi.has(name) ? '(.+)' : '([^/]+)';
        }
        return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      }).join('/') + '$');
      const body = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
      ops.push({
        template, method: method.toUpperCase(), re, names, literal,
        operationId: op.operationId,
        pathSchema: parameterSchema(parameters, 'path'),
        querySchema: parameterSchema(parameters, 'query'),
        validatePath: null,
        validateQuery: null,
        bodySchema: body ? body.schema : null,
        bodyRequired: !!(op.requestBody && op.requestBody.required),
        example: exampleOf(op),
        responses200: op.responses && op.responses['200'] && op.responses['200'].content,
        validate: null,
      });
    }
  }
  // The most literal template wins (/issues/comments/{id} over /issues/{number}/...).
  ops.sort((a, b) => b.literal - a.literal);
  return ops;
})();

// The parameters of one kind (path, query) as the JSON Schema of an object of strings: values are
// coerced to the declared types (per_page=100 is an integer), unknown names are errors.
function parameterSchema(parameters, where) {
  const properties = {};
  const required = [];
  for (const p of parameters) {
    if (p.in !== where) continue;
    properties[p.name] = p.schema || {};
    if (p.required) required.push(p.name);
  }
  return { type: 'object', properties, required, additionalProperties: false };
}

function exampleOf(op) {
  for (const code of ['200', '201']) {
    const c = op.responses && op.responses[code] && op.responses[code].content
      && op.responses[code].content['application/json'];
    if (c && c.examples) {
      const first = Object.values(c.examples)[0];
      if (first && first.value) return first.value;
    }
  }
  return null;
}

const ajv = new Ajv({ strict: false, allErrors: true, logger: false });
addFormats(ajv);
// Path and query parameters arrive as strings.
const ajvParams = new Ajv({ strict: false, allErrors: true, logger: false, coerceTypes: 'array' });
addFormats(ajvParams);

function findOperation(method, apiPath) {
  for (const op of OPERATIONS) {
    if (op.method !== method) continue;
    const m = op.re.exec(apiPath);
    if (m) {
      const params = {};
      const errors = [];
      op.names.forEach((n, i) => {
        try {
          params[n] = decodeURIComponent(m[i + 1]);
        } catch (e) {
          errors.push(`path parameter ${n}: bad percent-encoding in ${JSON.stringify(m[i + 1])}`);
          params[n] = m[i + 1];
        }
      });
      return { op, params, errors };
    }
  }
  return null;
}

// --- the repository at one commit (--files) -----------------------------------------------------------

// git's blob id: SHA-1 of "blob <length>\0" and the bytes.
function blobId(bytes) {
  return crypto.createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

// path -> { type: 'file', bytes } | { type: 'symlink', target } | { type: 'submodule', url, sha }
// | { type: 'dir' }; paths relative to the repository root, '/'-separated, the root is ''.
const tree = new Map([['', { type: 'dir' }]]);
// blob id -> bytes, for the blob endpoint.
const blobs = new Map();

function addEntry(rel, entry) {
  tree.set(rel, entry);
  if (entry.type === 'file') blobs.set(blobId(entry.bytes), entry.bytes);
  if (entry.type === 'symlink') blobs.set(blobId(Buffer.from(entry.target)), Buffer.from(entry.target));
  // Parent directories exist.
  for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) {
    if (!tree.has(rel.slice(0, i))) tree.set(rel.slice(0, i), { type: 'dir' });
  }
}

function loadTree(dir, rel) {
  for (const name of fs.readdirSync(path.join(dir, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    const full = path.join(dir, r);
    const st = fs.lstatSync(full);
    if (st.isSymbolicLink()) addEntry(r, { type: 'symlink', target: fs.readlinkSync(full) });
    else if (st.isDirectory()) {
      addEntry(r, { type: 'dir' });
      loadTree(dir, r);
    } else if (st.isFile()) addEntry(r, { type: 'file', bytes: fs.readFileSync(full) });
  }
}

if (opts.files) loadTree(opts.files, '');
for (const [p, url] of opts.submodules) {
  addEntry(p, { type: 'submodule', url, sha: crypto.createHash('sha1').update(`submodule ${url}`).digest('hex') });
}

// The bytes served for a file: --tamper changes one byte and keeps the blob id of the real ones.
function servedBytes(rel, bytes) {
  if (!opts.tamper.includes(rel)) return bytes;
  const copy = Buffer.from(bytes.length ? bytes : Buffer.from('\n'));
  copy[0] ^= 0x20;
  return copy;
}

// Base64 in lines of 60 characters, each ending with a newline, as GitHub sends it.
function base64Lines(bytes) {
  const b64 = bytes.toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 60) out += b64.slice(i, i + 60) + '\n';
  return out;
}

// A symlink's target, resolved inside the repository, if it names a path there.
function resolveLink(rel, target) {
  if (target.startsWith('/')) return null;
  const parts = rel.split('/').slice(0, -1);
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (!parts.length) return null;
      parts.pop();
    } else parts.push(seg);
  }
  return parts.join('/');
}

function entrySha(rel, e) {
  if (e.type === 'file') return blobId(e.bytes);
  if (e.type === 'symlink') return blobId(Buffer.from(e.target));
  if (e.type === 'submodule') return e.sha;
  // Not a real tree id; nothing checks it.
  return crypto.createHash('sha1').update(`tree ${rel}`).digest('hex');
}

function entrySize(e) {
  if (e.type === 'file') return e.bytes.length;
  if (e.type === 'symlink') return Buffer.byteLength(e.target);
  return 0;
}

// The fields every contents object has. `listed`: as an entry of a directory listing, where a
// submodule's type is "file" (GitHub's documented backwards compatibility).
function contentObject(base, owner, repo, rel, e, listed) {
  const sha = entrySha(rel, e);
  const enc = rel.split('/').map(encodeURIComponent).join('/');
  const web = `http://github.invalid/${owner}/${repo}`;
  const self = `${base}/repos/${owner}/${repo}/contents/${enc}?ref=${opts.commit}`;
  let gitUrl = `${base}/repos/${owner}/${repo}/git/${e.type === 'dir' ? 'trees' : 'blobs'}/${sha}`;
  let html = `${web}/${e.type === 'dir' ? 'tree' : 'blob'}/${opts.commit}/${enc}`;
  if (e.type === 'submodule') {
    gitUrl = null;
    html = null;
  }
  const download = e.type === 'file' ? `http://raw.github.invalid/${owner}/${repo}/${opts.commit}/${enc}` : null;
  const type = listed && e.type === 'submodule' ? 'file' : e.type;
  return {
    type, size: entrySize(e), name: rel.split('/').pop(), path: rel, sha,
    url: self, git_url: gitUrl, html_url: html, download_url: download,
    _links: { self, git: gitUrl, html },
  };
}

function repoGetContent(req, res, url, params, base, record) {
  const { owner, repo } = params;
  if (!url.searchParams.has('ref')) {
    state.invalid.push({ method: req.method, path: url.pathname, operation: 'repos/get-content', errors: ['no ref: this reads the default branch, not the job\'s commit'] });
  }
  const ref = url.searchParams.get('ref');
  if (ref !== null && ref !== opts.commit) {
    error(res, 404, `No commit found for the ref ${ref}`);
    return 404;
  }
  const accept = req.headers.accept || '';
  const objectFormat = accept.includes('application/vnd.github.object');
  record.media = objectFormat ? 'object' : 'json';
  const rel = params.path.replace(/\/+$/, '');
  record.repo_path = rel;
  let e = tree.get(rel);
  if (!e) {
    error(res, 404, 'Not Found');
    return 404;
  }
  let at = rel;
  if (e.type === 'symlink') {
    // GitHub answers with the target when it is a file of the repository.
    const target = resolveLink(rel, e.target);
    if (target !== null && tree.has(target) && tree.get(target).type === 'file') {
      at = target;
      e = tree.get(target);
    }
  }
  const obj = contentObject(base, owner, repo, at, e, false);
  if (e.type === 'file') {
    if (e.bytes.length > opts.inlineLimit) {
      if (!objectFormat) {
        error(res, 403, 'This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, but you can use the Git Data API to request blobs up to 100 MB in size.', { errors: [{ resource: 'Blob', field: 'data', code: 'too_large' }] });
        return 403;
      }
      obj.content = '';
      obj.encoding = 'none';
    } else {
      obj.content = base64Lines(servedBytes(at, e.bytes));
      obj.encoding = 'base64';
    }
  } else if (e.type === 'symlink') {
    obj.target = e.target;
  } else if (e.type === 'submodule') {
    obj.submodule_git_url = e.url;
  } else if (e.type === 'dir') {
    const prefix = at ? `${at}/` : '';
    const entries = [...tree.keys()]
      .filter((k) => k.startsWith(prefix) && k !== at && !k.slice(prefix.length).includes('/'))
      .sort()
      .map((k) => contentObject(base, owner, repo, k, tree.get(k), true));
    if (!objectFormat) {
      selfCheck(req, url, 'repos/get-content', 'application/json', entries);
      send(res, 200, entries);
      return 200;
    }
    obj.entries = entries;
  }
  selfCheck(req, url, 'repos/get-content', objectFormat ? 'application/vnd.github.object' : 'application/json', obj);
  send(res, 200, obj);
  return 200;
}

function repoGetBlob(req, res, url, params, base, record) {
  const { owner, repo } = params;
  const sha = params.file_sha.toLowerCase();
  const bytes = blobs.get(sha);
  if (!bytes) {
    error(res, 404, 'Not Found');
    return 404;
  }
  let rel = null;
  for (const [k, e] of tree) if (e.type === 'file' && blobId(e.bytes) === sha) rel = k;
  record.repo_path = rel;
  const served = rel === null ? bytes : servedBytes(rel, bytes);
  const blob = {
    sha, node_id: `B_${sha.slice(0, 12)}`, size: bytes.length,
    url: `${base}/repos/${owner}/${repo}/git/blobs/${sha}`,
    content: base64Lines(served), encoding: 'base64',
  };
  selfCheck(req, url, 'git/get-blob', 'application/json', blob);
  send(res, 200, blob);
  return 200;
}

// The mock's own answers must match GitHub's description of them; a mismatch is the mock's bug.
const responseValidators = new Map();
function selfCheck(req, url, operationId, mediaType, body) {
  const key = `${operationId} ${mediaType}`;
  if (!responseValidators.has(key)) {
    const op = operationById(operationId);
    const spec = op.responses200 && op.responses200[mediaType];
    responseValidators.set(key, spec ? ajv.compile(spec.schema) : null);
  }
  const validate = responseValidators.get(key);
  if (validate && !validate(body)) {
    state.invalid.push({ method: req.method, path: url.pathname, operation: operationId, errors: validate.errors.map((e) => `mock answer: ${e.instancePath || '/'} ${e.message}`) });
  }
}

// --- state ------------------------------------------------------------------------------------------

const state = {
  comments: {}, // "owner/repo#number" -> [comment]
  check_runs: [],
  requests: [],
  invalid: [],
};
let nextCommentId = 1000;
let nextCheckRunId = 5000;

const BOT = { login: 'github-actions[bot]', id: 41898282, type: 'Bot' };
const identity = opts.login ? { login: opts.login, id: 4242, type: 'User' } : BOT;
const OCTOCAT = { login: 'octocat', id: 1, type: 'User' };
const MALLORY = { login: 'mallory', id: 666, type: 'User' };

function now() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function userObject(base, u) {
  const web = base.replace(/\/api\/v3$/, '');
  const api = `${base}/users/${encodeURIComponent(u.login)}`;
  return {
    login: u.login, id: u.id, node_id: `U_${u.id}`,
    avatar_url: `${web}/avatars/u/${u.id}`, gravatar_id: '',
    url: api, html_url: `${web}/${u.login}`,
    followers_url: `${api}/followers`, following_url: `${api}/following{/other_user}`,
    gists_url: `${api}/gists{/gist_id}`, starred_url: `${api}/starred{/owner}{/repo}`,
    subscriptions_url: `${api}/subscriptions`, organizations_url: `${api}/orgs`,
    repos_url: `${api}/repos`, events_url: `${api}/events{/privacy}`,
    received_events_url: `${api}/received_events`, type: u.type, site_admin: false,
  };
}

function commentObject(base, key, c) {
  const [full, number] = key.split('#');
  const example = operationById('issues/create-comment').example || {};
  return Object.assign(JSON.parse(JSON.stringify(example)), {
    id: c.id,
    node_id: `IC_${c.id}`,
    url: `${base}/repos/${full}/issues/comments/${c.id}`,
    html_url: `http://github.invalid/${full}/pull/${number}#issuecomment-${c.id}`,
    issue_url: `${base}/repos/${full}/issues/${number}`,
    body: c.body,
    user: userObject(base, c.user),
    created_at: c.created_at,
    updated_at: c.updated_at,
    author_association: c.user.type === 'Bot' ? 'NONE' : 'CONTRIBUTOR',
  });
}

function checkRunObject(base, full, run) {
  const example = operationById('checks/create').example || {};
  return Object.assign(JSON.parse(JSON.stringify(example)), {
    id: run.id,
    node_id: `CR_${run.id}`,
    head_sha: run.head_sha,
    external_id: run.external_id || '',
    url: `${base}/repos/${full}/check-runs/${run.id}`,
    html_url: `http://github.invalid/${full}/runs/${run.id}`,
    details_url: null,
    status: run.status,
    conclusion: run.conclusion,
    started_at: run.started_at,
    completed_at: run.completed_at,
    output: {
      title: run.output.title, summary: run.output.summary, text: run.output.text || null,
      annotations_count: run.annotations.length,
      annotations_url: `${base}/repos/${full}/check-runs/${run.id}/annotations`,
    },
    name: run.name,
    pull_requests: [],
  });
}

function operationById(id) {
  return OPERATIONS.find((o) => o.operationId === id) || {};
}

function seeded(owner, repo) {
  const list = [];
  const when = '2026-01-01T00:00:00Z';
  for (let i = 0; i < opts.seed; i++) {
    if (opts.decoy && i === 3) {
      list.push({ id: nextCommentId++, user: MALLORY, body: `${MARKER}\nnot the guard's comment`, created_at: when, updated_at: when });
    }
    list.push({ id: nextCommentId++, user: OCTOCAT, body: `unrelated comment ${i + 1}`, created_at: when, updated_at: when });
  }
  return list;
}

// Comments of an issue; the pull request given with --pr starts with the seeded ones.
function commentsOf(owner, repo, number) {
  const key = `${owner}/${repo}#${number}`;
  if (!state.comments[key]) state.comments[key] = number === opts.pr ? seeded(owner, repo) : [];
  return [key, state.comments[key]];
}

function findComment(owner, repo, id) {
  for (const [key, list] of Object.entries(state.comments)) {
    if (!key.startsWith(`${owner}/${repo}#`)) continue;
    const c = list.find((x) => x.id === id);
    if (c) return [key, c];
  }
  return [null, null];
}

// --- HTTP ----------------------------------------------------------------------------------------------

function send(res, status, body, headers) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, Object.assign({
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'x-github-media-type': 'github.v3; format=json',
  }, headers || {}));
  res.end(text);
}

function error(res, status, message, extra) {
  send(res, status, Object.assign({
    message,
    documentation_url: 'https://docs.github.com/rest',
    status: String(status),
  }, extra || {}));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let status = 500;
    const url = new URL(req.url, `http://${req.headers.host}`);
    const record = { method: req.method, path: url.pathname, query: url.search, status: 0 };
    try {
      status = handle(req, res, url, Buffer.concat(chunks).toString('utf8'), record);
    } catch (e) {
      process.stderr.write(`mock_github: ${e.stack}\n`);
      error(res, 500, `mock failure: ${e.message}`);
    }
    record.status = status || res.statusCode;
    if (url.pathname !== '/__state') state.requests.push(record);
  });
});

function handle(req, res, url, raw, record) {
  if (req.method === 'GET' && url.pathname === '/__state') {
    send(res, 200, state);
    return 200;
  }
  if (!url.pathname.startsWith(opts.prefix + '/')) {
    error(res, 404, 'Not Found');
    return 404;
  }
  const apiPath = url.pathname.slice(opts.prefix.length);
  const base = `http://${req.headers.host}${opts.prefix}`;

  const auth = req.headers.authorization || '';
  if (auth !== `Bearer ${opts.token}` && auth !== `token ${opts.token}`) {
    state.invalid.push({ method: req.method, path: url.pathname, errors: ['bad or missing Authorization header'] });
    error(res, 401, opts.echoAuth ? `Bad credentials: ${auth}` : 'Bad credentials');
    return 401;
  }

  const found = findOperation(req.method, apiPath);
  if (!found) {
    state.invalid.push({ method: req.method, path: url.pathname, errors: ['no such operation in the OpenAPI description'] });
    error(res, 404, 'Not Found');
    return 404;
  }
  const { op, params } = found;
  record.operation = op.operationId;

  const paramErrors = found.errors.concat(validateParameters(op, params, url.searchParams));
  if (paramErrors.length) {
    state.invalid.push({ method: req.method, path: url.pathname, query: url.search, operation: op.operationId, errors: paramErrors });
    error(res, 422, 'Validation Failed', { errors: paramErrors.map((m) => ({ resource: op.operationId, code: 'invalid', message: m })) });
    return 422;
  }

  let body;
  if (req.method === 'POST' || req.method === 'PATCH' || req.method === 'PUT') {
    const errors = validateBody(op, req, raw);
    if (errors.body !== undefined) body = errors.body;
    if (errors.list.length) {
      state.invalid.push({ method: req.method, path: url.pathname, operation: op.operationId, errors: errors.list, body: raw.slice(0, 2000) });
      error(res, 422, 'Validation Failed', { errors: errors.list.map((m) => ({ resource: op.operationId, code: 'invalid', message: m })) });
      return 422;
    }
    if (opts.forbidWrites) {
      error(res, 403, 'Resource not accessible by integration');
      return 403;
    }
  }
  return dispatch(req, res, url, op, params, body, base, record);
}

// Path and query parameters against the operation's declared parameters.
function validateParameters(op, params, searchParams) {
  const list = [];
  if (!op.validatePath) op.validatePath = ajvParams.compile(op.pathSchema);
  if (!op.validateQuery) op.validateQuery = ajvParams.compile(op.querySchema);
  if (!op.validatePath(Object.assign({}, params))) {
    for (const e of op.validatePath.errors) list.push(`path parameters: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
  const query = {};
  for (const [k, v] of searchParams) {
    if (k in query) query[k] = [].concat(query[k], v);
    else query[k] = v;
  }
  if (!op.validateQuery(query)) {
    for (const e of op.validateQuery.errors) list.push(`query parameters: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
  return list;
}

function validateBody(op, req, raw) {
  const list = [];
  const type = (req.headers['content-type'] || '').split(';')[0].trim();
  if (raw.length && type !== 'application/json') list.push(`content-type is ${JSON.stringify(type)}, not application/json`);
  let body;
  if (raw.length) {
    try {
      body = JSON.parse(raw);
    } catch (e) {
      list.push(`body is not JSON: ${e.message}`);
      return { list };
    }
  }
  if (!op.bodySchema) {
    if (raw.length) list.push(`${op.operationId} takes no request body`);
    return { list, body };
  }
  if (body === undefined) {
    list.push('request body missing');
    return { list };
  }
  if (!op.validate) op.validate = ajv.compile(op.bodySchema);
  if (!op.validate(body)) {
    for (const e of op.validate.errors) list.push(`${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
  // Rules GitHub enforces beyond the schema.
  if (op.operationId === 'checks/create' && body.status === 'completed' && !body.conclusion) {
    list.push('conclusion is required when status is completed');
  }
  for (const a of (body.output && body.output.annotations) || []) {
    if (a.start_line < 1 || a.end_line < a.start_line) list.push(`annotation lines ${a.start_line}-${a.end_line} are invalid`);
    if (a.title !== undefined && [...a.title].length > 255) list.push('annotation title longer than 255 characters');
    if (Buffer.byteLength(a.message || '') > 65536) list.push('annotation message larger than 64 KB');
  }
  if ((op.operationId === 'issues/create-comment' || op.operationId === 'issues/update-comment')
    && typeof body.body === 'string' && [...body.body].length > 65536) {
    list.push('body is too long (maximum is 65536 characters)');
  }
  return { list, body };
}

function dispatch(req, res, url, op, params, body, base, record) {
  const { owner, repo } = params;
  switch (op.operationId) {
    case 'users/get-authenticated': {
      if (identity.type === 'Bot') {
        error(res, 403, 'Resource not accessible by integration');
        return 403;
      }
      send(res, 200, userObject(base, identity));
      return 200;
    }
    case 'issues/list-comments': {
      const number = Number(params.issue_number);
      const [key, list] = commentsOf(owner, repo, number);
      let perPage = Number(url.searchParams.get('per_page') || 30);
      if (!Number.isInteger(perPage) || perPage < 1) perPage = 30;
      perPage = Math.min(perPage, 100);
      let page = Number(url.searchParams.get('page') || 1);
      if (!Number.isInteger(page) || page < 1) page = 1;
      const last = Math.max(1, Math.ceil(list.length / perPage));
      const items = list.slice((page - 1) * perPage, page * perPage).map((c) => commentObject(base, key, c));
      const link = (p) => `<${base}${url.pathname.slice(opts.prefix.length)}?per_page=${perPage}&page=${p}>`;
      const links = [];
      if (page < last) links.push(`${link(page + 1)}; rel="next"`, `${link(last)}; rel="last"`);
      if (page > 1) links.push(`${link(1)}; rel="first"`, `${link(page - 1)}; rel="prev"`);
      record.page = page;
      send(res, 200, items, links.length ? { link: links.join(', ') } : {});
      return 200;
    }
    case 'issues/create-comment': {
      const number = Number(params.issue_number);
      const [key, list] = commentsOf(owner, repo, number);
      const c = { id: nextCommentId++, user: identity, body: body.body, created_at: now(), updated_at: now() };
      list.push(c);
      send(res, 201, commentObject(base, key, c), { location: `${base}/repos/${owner}/${repo}/issues/comments/${c.id}` });
      return 201;
    }
    case 'issues/update-comment': {
      const [key, c] = findComment(owner, repo, Number(params.comment_id));
      if (!c) {
        error(res, 404, 'Not Found');
        return 404;
      }
      if (c.user.login !== identity.login) {
        // Someone else's comment: the guard must not take it over.
        state.invalid.push({ method: req.method, path: url.pathname, operation: op.operationId, errors: [`update of a comment by ${c.user.login}`] });
        error(res, 403, 'Resource not accessible by integration');
        return 403;
      }
      c.body = body.body;
      c.updated_at = now();
      send(res, 200, commentObject(base, key, c));
      return 200;
    }
    case 'checks/create': {
      const annotations = (body.output && body.output.annotations) || [];
      const run = {
        id: nextCheckRunId++, owner, repo, name: body.name, head_sha: body.head_sha,
        status: body.conclusion ? 'completed' : (body.status || 'queued'),
        conclusion: body.conclusion || null,
        started_at: body.started_at || now(),
        completed_at: body.conclusion ? (body.completed_at || now()) : null,
        external_id: body.external_id,
        output: body.output ? { title: body.output.title, summary: body.output.summary, text: body.output.text } : { title: null, summary: null },
        annotations: annotations.slice(),
        requests: [{ method: 'POST', annotations: annotations.length }],
      };
      state.check_runs.push(run);
      send(res, 201, checkRunObject(base, `${owner}/${repo}`, run));
      return 201;
    }
    case 'checks/update': {
      const run = state.check_runs.find((r) => r.id === Number(params.check_run_id) && r.owner === owner && r.repo === repo);
      if (!run) {
        error(res, 404, 'Not Found');
        return 404;
      }
      const annotations = (body.output && body.output.annotations) || [];
      for (const k of ['name', 'status', 'conclusion', 'completed_at', 'external_id']) {
        if (body[k] !== undefined) run[k] = body[k];
      }
      if (body.output) {
        run.output = { title: body.output.title, summary: body.output.summary, text: body.output.text };
      }
      run.annotations.push(...annotations);
      run.requests.push({ method: 'PATCH', annotations: annotations.length });
      send(res, 200, checkRunObject(base, `${owner}/${repo}`, run));
      return 200;
    }
    case 'repos/get-content':
    case 'git/get-blob': {
      if (opts.contentsStatus) {
        const messages = { 401: 'Bad credentials', 403: 'Resource not accessible by integration', 404: 'Not Found', 500: 'Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable' };
        error(res, opts.contentsStatus, messages[opts.contentsStatus] || `HTTP ${opts.contentsStatus}`);
        return opts.contentsStatus;
      }
      return op.operationId === 'repos/get-content'
        ? repoGetContent(req, res, url, params, base, record)
        : repoGetBlob(req, res, url, params, base, record);
    }
    default:
      state.invalid.push({ method: req.method, path: url.pathname, operation: op.operationId, errors: ['operation not implemented by the mock'] });
      error(res, 404, 'Not Found');
      return 404;
  }
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});

// Ends with its parent: a test that dies does not leave the mock behind.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
