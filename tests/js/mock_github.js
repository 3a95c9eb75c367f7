#!/usr/bin/env node
// A local stand-in for the GitHub REST API, for tests of the pull request feedback (src/github/api.rs).
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
// The first line on stdout is the port it listens on (127.0.0.1, port chosen by the system), printed
// once the OpenAPI description is loaded. GET /__state (no prefix, no token) returns
// {comments, check_runs, requests, invalid}: comments per "owner/repo#number", check runs with their
// accumulated annotations and the annotation count of every request, every request (method, path,
// status), and the requests rejected as invalid with the validation errors.
'use strict';

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
