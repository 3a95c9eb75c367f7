#!/usr/bin/env python3
"""A stand-in for the GitHub Actions runner's worker (Runner.Worker), for tests of the Action the
way it really runs: it reads one job file, runs the guard action's pre, the job's steps and the
guard's post, each step as its own direct child process, and applies GITHUB_ENV, GITHUB_PATH and
GITHUB_STATE between steps as the runner does. Python 3's standard library only; run as the
unprivileged runner user by tests/standin/mod.rs. No code of the runner is copied here.

What the runner does, read from its source (actions/runner v2.336.0, commit 258d6c8; paths under
src/). Where this file does less, it says so.

1. The step process.
   - A node action's pre/main/post runs `<runner>/externals/node24/bin/node "<action dir>/<script>"`:
     the script path in double quotes (a `"` inside escaped), which .NET parses back, so argv is
     exactly [node, script]; `--no-maglev` comes first when ACTIONS_RUNNER_DISABLE_NODE_MAGLEV is
     true (1, true, $true) in the worker's or the step's environment. Working directory: the
     workspace. (Runner.Worker/Handlers/NodeScriptActionHandler.cs)
   - action.yml is read again at every stage (Runner.Worker/ActionManager.cs LoadAction, called by
     ActionRunner.RunAsync): pre, main and post run the script and input defaults the file names
     *then*. The post is registered, with its post-if, when pre (or main) runs (ActionRunner.cs).
   - A `run:` step: the script is written to $RUNNER_TEMP/<guid>.sh (UTF-8, no BOM). Without
     `shell:` it runs `bash -e <file>` (`sh -e` when there is no bash); `shell: bash` runs
     `bash --noprofile --norc -e -o pipefail <file>`; `shell: sh` runs `sh -e <file>`. The shell is
     looked up in the GITHUB_PATH directories, then in the *worker's* PATH, first file of that name
     (not checked for the execute bit). Working directory: the workspace. A non-zero exit logs
     "Process completed with exit code N." and fails the step. (Handlers/ScriptHandler.cs,
     Handlers/ScriptHandlerHelpers.cs, Runner.Sdk/Util/WhichUtil.cs)
   - Every step is started by System.Diagnostics.Process with UseShellExecute=false
     (Runner.Sdk/ProcessInvoker.cs, through Handlers/StepHost.cs DefaultStepHost), which is vfork
     and execve by the worker itself, without setsid or setpgid (dotnet/runtime,
     src/native/libs/System.Native/pal_process.c): the step is a direct child of the worker, in
     the worker's process group.
     stdin is a pipe closed at once, stdout and stderr are pipes; the child's oom_score_adj is set
     to 500 (PIPELINE_JOB_OOMSCOREADJ overrides). Once the process has exited the worker waits at
     most 5 s for its pipes to close, then goes on. Exit status of a signal death: 128+N.
   - Before every step the event payload is written again to
     $RUNNER_TEMP/_github_workflow/event.json (ExecutionContext.WriteWebhookPayload, from
     ActionRunner.RunAsync): a step that edits it affects itself only.
2. The step's environment, lowest precedence first:
   a. the worker's own environment; it includes RUNNER_TRACKING_ID=github_<guid>, set at job
      start (Runner.Worker/JobExtension.cs);
   b. the env context: the job's `env:`, overwritten by GITHUB_ENV of earlier steps (both are
      Global.EnvironmentVariables), overwritten by the step's own `env:` (StepsRunner.cs);
   c. action steps: STATE_<name> for each name this action's pre or main saved (names compared
      case-insensitively; pre, main and post share one state) (ActionRunner.cs);
   d. action steps: INPUT_<NAME> for every `with:` input and every default of action.yml not
      given, the name upper-cased with spaces made `_` (Handlers/Handler.cs AddInputsToEnvironment);
   e. PATH: the GITHUB_PATH directories, the latest first (a directory added again moves to the
      front), `:`, then PATH of (b), else the worker's PATH; unchanged when it already starts so
      (Handler.cs AddPrependPathToEnvironment, Runner.Sdk/Util/PathUtil.cs);
   f. GITHUB_<KEY> for the github context's allow-listed keys (GitHubContext.cs; not `token`) and
      RUNNER_<KEY> for the runner context (RunnerContext.cs). These win over GITHUB_ENV: it cannot
      change GITHUB_SHA, GITHUB_EVENT_PATH, GITHUB_ACTION, GITHUB_WORKSPACE, GITHUB_ENV, GITHUB_STATE,
      RUNNER_TEMP...; it can set GITHUB_TOKEN, any undeclared INPUT_x, and STATE_x for a name the
      action did not save. GITHUB_ACTION_REPOSITORY and GITHUB_ACTION_REF are the action's on its
      steps and empty on `run:` steps (ActionRunner.cs);
   g. node steps: NODE_ICU_DATA removed from (b)-(f) (NodeScriptActionHandler.cs);
   h. GITHUB_ACTIONS=true always, CI=true unless set (ProcessInvoker.cs).
   GITHUB_ACTION is the step's id (the server names a step without one `__run`, `__run_2`,
   `__owner_repo`), the same for an action's pre, main and post (StepsRunner.cs).
3. Order and outcome. Pre steps run at job start; a step whose `if:` (default success()) is
   false after a failure is skipped; post steps run after every main step, last registered first
   (ExecutionContext.RegisterPostJobStep, StepsRunner.cs); post-if defaults to always(), so the
   post runs after a failed step. Any failed step, post included, fails the job. After the posts
   the worker SIGKILLs every process that was not running at job start and carries its
   RUNNER_TRACKING_ID (JobExtension.cs).
4. File commands (Runner.Worker/FileCommandManager.cs). Fresh files per step under
   $RUNNER_TEMP/_runner_file_commands/ (add_path_, set_env_, step_summary_, save_state_,
   set_output_, artifacts_, artifacts_list_ + one guid), processed after the step, failed or not,
   in that order:
   - GITHUB_ENV, GITHUB_STATE, GITHUB_OUTPUT (EnvFileKeyValuePairs): lines end at LF only (a CR
     stays in the value); empty lines are skipped; a line is NAME=VALUE when its first `=` comes
     before its first `<<`, and NAME<<DELIM when `<<` comes first: the value is the following lines
     up to one that is exactly DELIM, joined by LF. Errors: "Invalid format '<line>'" (neither),
     "Invalid format '<line>'. Name must not be empty and delimiter must not be empty", "Invalid
     value. Matching delimiter not found '<DELIM>'", "Invalid value. EOF marker missing new line."
     Each is logged after "Unable to process file command '<env|state|output>' successfully." and
     fails the step; the pairs before it are applied. `=VALUE` passes the parser (its check tests
     the line, not the name): in GITHUB_ENV it is stored, then fails the step.
   - GITHUB_ENV refuses NODE_OPTIONS, compared case-insensitively, and nothing else: the writing
     step's log says "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command." as
     an error, and the step does not fail.
   - GITHUB_PATH: each non-empty line (ended by LF, CR or CRLF) is a directory, neither trimmed nor
     checked.
   - GITHUB_STEP_SUMMARY over 1 MiB is dropped with an error (the step does not fail).
   Not reproduced here: workflow commands on stdout (`::add-mask::`, `::save-state::`, and
   `::set-env::` / `::add-path::`, which work again once ACTIONS_ALLOW_UNSECURE_COMMANDS=true is in
   the env context, GITHUB_ENV included), `timeout-minutes` (the stand-in's own bound kills the
   step's process tree at once instead), ACTIONS_RUNTIME_* and ACTIONS_ID_TOKEN_*, secret masking,
   and emptying RUNNER_TEMP after the job (kept for the test to read).

The job file (JSON), written by tests/standin/mod.rs:
  {"node": path, "action": {"dir", "repository", "ref"} or null, "env": {job env},
   "github": {context key: value; "workspace" required, "token" for ${{ github.token }}},
   "runner": {context key: value; "temp" required}, "event": payload, "step_bound": seconds,
   "logs": dir, "result": path,
   "steps": [{"id", "run": script, "shell"?: "bash"|"sh", "env"?: {}, "if"?: condition} |
             {"id", "uses": "guard", "with"?: {}, "env"?: {}, "if"?: condition}]}
  A condition is always(), success(), failure(), cancelled() or !cancelled(), in ${{ }} or not.
The result file (JSON, version 1):
  {"version": 1, "conclusion": "success"|"failure", "error": the stand-in's own failure or null,
   "worker_pid", "uid", "gid", "groups", "tracking_id",
   "steps": [{"id", "phase": "pre"|"main"|"post", "outcome": "success"|"failure"|"skipped",
              "exit_code", "signal", "timed_out", "output_held_open", "argv", "log", "summary",
              "outputs"}],
   "orphans": [{"pid", "name"}]}
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

# The github context keys the runner exports as GITHUB_<KEY> (GitHubContext.cs).
GITHUB_EXPORTED = frozenset(
    """action_path action_ref action_repository action actor actor_id api_url artifacts
    artifacts_list base_ref env event_name event_path graphql_url head_ref job output path ref_name
    ref_protected ref_type ref repository repository_id repository_owner repository_owner_id
    retention_days run_attempt run_id run_number server_url sha state step_summary
    triggering_actor workflow workflow_ref workflow_sha workspace""".split()
)
# File commands: (github context key, file prefix), in the order the runner processes them.
FILE_COMMANDS = [
    ("path", "add_path_"),
    ("env", "set_env_"),
    ("step_summary", "step_summary_"),
    ("state", "save_state_"),
    ("output", "set_output_"),
    ("artifacts", "artifacts_"),
    ("artifacts_list", "artifacts_list_"),
]
SUMMARY_LIMIT = 1024 * 1024
OUTPUT_GRACE = 5.0
NODE_VERSIONS = ("node20", "node24")


class StandinError(Exception):
    """Something the stand-in does not reproduce, or a bad job file: the job is abandoned."""


class FileCommandError(Exception):
    """A file command the runner would refuse (its message is the runner's)."""


def upper(name):
    """.NET's ToUpperInvariant: one character for one (Python's 'ß'.upper() is 'SS')."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in name)


def truthy(value):
    """The runner's StringUtil.ConvertToBoolean."""
    return (value or "").lower() in ("1", "true", "$true")


def read_text(path):
    """File.ReadAllText: UTF-8, a byte-order mark dropped, invalid bytes replaced."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8-sig", errors="replace")


def env_file_pairs(text):
    """The (name, value) pairs of a GITHUB_ENV / GITHUB_STATE / GITHUB_OUTPUT file, one at a
    time, as the runner reads them; FileCommandError where it stops."""
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
        lines = [(p, True) for p in parts]
    else:
        lines = [(p, True) for p in parts[:-1]] + [(parts[-1], False)]
    i = 0
    while i < len(lines):
        line = lines[i][0]
        i += 1
        if line == "":
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            name, value = line.split("=", 1)
        elif heredoc >= 0 and (eq < 0 or heredoc < eq):
            name, delimiter = line.split("<<", 1)
            if not name or not delimiter:
                raise FileCommandError(
                    f"Invalid format '{line}'. Name must not be empty and delimiter must not be empty"
                )
            value_lines = []
            while True:
                if i >= len(lines):
                    raise FileCommandError(
                        f"Invalid value. Matching delimiter not found '{delimiter}'"
                    )
                candidate, ended = lines[i]
                i += 1
                if candidate == delimiter:
                    break
                if not ended:
                    raise FileCommandError("Invalid value. EOF marker missing new line.")
                value_lines.append(candidate)
            value = "\n".join(value_lines)
        else:
            raise FileCommandError(f"Invalid format '{line}'")
        yield name, value


class State:
    """An action's saved state: names compared case-insensitively, the first spelling kept."""

    def __init__(self):
        self.values = {}

    def set(self, name, value):
        key = name.lower()
        spelled = self.values[key][0] if key in self.values else name
        self.values[key] = (spelled, value)

    def items(self):
        return list(self.values.values())


# ---------------------------------------------------------------------------------------------
# action.yml: the subset of YAML an action manifest uses
# ---------------------------------------------------------------------------------------------


def strip_comment(line):
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"" and (i == 0 or line[i - 1] in " \t:"):
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def yaml_scalar(text, where):
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            raise StandinError(f"{where}: a double-quoted scalar the stand-in cannot read: {text}")
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise StandinError(f"{where}: an unterminated single-quoted scalar: {text}")
        return text[1:-1].replace("''", "'")
    if text[0] in "[{|>&*!%@`":
        raise StandinError(f"{where}: YAML the stand-in does not read (flow, block scalar, anchor or tag): {text}")
    return text


def load_manifest(path):
    """action.yml as nested dicts of strings: block mappings of plain or quoted scalars only. The
    stand-in refuses anything else (the runner reads full YAML; a test that needs more extends
    this)."""
    root = {}
    stack = [(0, root)]
    open_key = None
    for number, raw in enumerate(read_text(path).split("\n"), 1):
        where = f"{path}:{number}"
        line = strip_comment(raw.rstrip("\r")).rstrip()
        if not line.strip() or line.strip() == "---":
            continue
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if body.startswith("\t") or body.startswith("- ") or body == "-":
            raise StandinError(f"{where}: YAML the stand-in does not read (a tab or a sequence)")
        if open_key and indent > open_key[2]:
            child = {}
            open_key[0][open_key[1]] = child
            stack.append((indent, child))
        else:
            while stack[-1][0] > indent:
                stack.pop()
            if stack[-1][0] != indent:
                raise StandinError(f"{where}: bad indentation")
        open_key = None
        mapping = stack[-1][1]
        m = re.match(r"""("[^"]*"|'[^']*'|[^'"][^:]*?)\s*:(?:\s+(.*)|$)""", body)
        if not m:
            raise StandinError(f"{where}: not a `key: value` line: {body}")
        key = yaml_scalar(m.group(1), where)
        if key in mapping:
            raise StandinError(f"{where}: duplicate key {key}")
        value = (m.group(2) or "").strip()
        if value:
            mapping[key] = yaml_scalar(value, where)
        else:
            mapping[key] = None
            open_key = (mapping, key, indent)
    return root


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")


def evaluate(text, github):
    """`${{ github.<key> }}` in an input default; the stand-in evaluates nothing else."""

    def one(m):
        key = re.fullmatch(r"\s*github\.([A-Za-z_][A-Za-z0-9_-]*)\s*", m.group(1))
        if not key:
            raise StandinError(f"action.yml: the stand-in evaluates only github.<key>, not {m.group(0)}")
        return github.get(key.group(1), "")

    return EXPRESSION.sub(one, text)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def processes():
    """{pid: (ppid, comm)} of the host."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        found[int(entry)] = (ppid, name)
    return found


def kill_tree(pid):
    """SIGKILL to `pid` and its descendants."""
    table = processes()
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, (ppid, _) in table.items():
            if ppid in tree and child not in tree:
                tree.add(child)
                grew = True
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def which(command, prepend):
    """WhichUtil.Which: the first file named `command` in the GITHUB_PATH directories, then the
    worker's own PATH (a symbolic link only when its target exists)."""
    dirs = list(reversed(prepend)) + os.environ.get("PATH", "").split(":")
    for d in dirs:
        if d and os.path.isdir(d) and os.path.isfile(os.path.join(d, command)):
            return os.path.join(d, command)
    return None


class Log:
    """A step's log: its stdout and stderr, line by line, and the runner's messages."""

    def __init__(self, path):
        self.path = path
        self.file = open(path, "ab")
        self.lock = threading.Lock()
        self.open = True

    def line(self, data):
        if isinstance(data, str):
            data = data.encode()
        if not data.endswith(b"\n"):
            data += b"\n"
        with self.lock:
            if self.open:
                self.file.write(data)
                self.file.flush()

    def error(self, message):
        self.line("##[error]" + message)

    def warning(self, message):
        self.line("##[warning]" + message)

    def copy(self, pipe):
        for data in iter(pipe.readline, b""):
            self.line(data)

    def close(self):
        with self.lock:
            self.open = False
            self.file.close()


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------


class Worker:
    def __init__(self, spec):
        self.spec = spec
        self.node = spec["node"]
        self.action = spec.get("action")
        self.global_env = dict(spec.get("env") or {})
        self.github = dict(spec["github"])
        self.runner = dict(spec["runner"])
        self.temp = self.runner["temp"]
        self.workspace = self.github["workspace"]
        self.event = json.dumps(spec.get("event") or {})
        self.bound = float(spec["step_bound"])
        self.logs = spec["logs"]
        self.prepend = []
        self.state = State()
        self.failed = False
        self.post_if = None
        self.results = []
        self.orphans = []
        self.tracking_id = None
        self.files = {}

    def run(self):
        steps = self.spec["steps"]
        ids = [s["id"] for s in steps]
        if len(set(ids)) != len(ids):
            raise StandinError(f"step ids must be unique: {ids}")
        guard = [s for s in steps if "uses" in s]
        if len(guard) > 1 or any(s["uses"] != "guard" for s in guard):
            raise StandinError("the stand-in runs one action, `uses: guard`, at most once")
        if guard and not self.action:
            raise StandinError("a `uses: guard` step needs the job file's `action`")
        self.tracking_id = "github_" + str(uuid.uuid4())
        os.environ["RUNNER_TRACKING_ID"] = self.tracking_id
        before = {f"{pid}_{name}" for pid, (_, name) in processes().items()}
        for entry in os.listdir(self.temp):
            self.remove(os.path.join(self.temp, entry))
        os.makedirs(os.path.join(self.temp, "_runner_file_commands"))

        if guard:
            runs = self.manifest().get("runs") or {}
            if runs.get("pre") and self.condition(runs.get("pre-if") or "always()"):
                self.run_action(guard[0], "pre")
        for step in steps:
            if not self.condition(step.get("if") or "success()"):
                self.skip(step["id"], "main")
            elif "uses" in step:
                self.run_action(step, "main")
            else:
                self.run_script(step)
        if guard and self.post_if is not None:
            if self.condition(self.post_if):
                self.run_action(guard[0], "post")
            else:
                self.skip(guard[0]["id"], "post")
        self.clean_up(before)

    @staticmethod
    def remove(path):
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in os.listdir(path):
                Worker.remove(os.path.join(path, entry))
            os.rmdir(path)
        else:
            os.unlink(path)

    def condition(self, expression):
        e = expression.strip()
        if e.startswith("${{") and e.endswith("}}"):
            e = e[3:-2].strip()
        known = {
            "always()": True,
            "success()": not self.failed,
            "failure()": self.failed,
            "cancelled()": False,
            "!cancelled()": True,
        }
        if e not in known:
            raise StandinError(f"the stand-in evaluates {sorted(known)} only, not {expression!r}")
        return known[e]

    def manifest(self):
        path = os.path.join(self.action["dir"], "action.yml")
        if not os.path.isfile(path):
            path = os.path.join(self.action["dir"], "action.yaml")
        return load_manifest(path)

    # -- one step ---------------------------------------------------------------------------

    def begin_step(self, step):
        """FileCommandManager.InitializeFiles and WriteWebhookPayload: fresh files, the event."""
        for path in self.files.values():
            try:
                os.unlink(path)
            except OSError:
                pass
        suffix = str(uuid.uuid4())
        directory = os.path.join(self.temp, "_runner_file_commands")
        self.files = {}
        for key, prefix in FILE_COMMANDS:
            path = os.path.join(directory, prefix + suffix)
            open(path, "wb").close()
            self.files[key] = path
            self.github[key] = path
        event_dir = os.path.join(self.temp, "_github_workflow")
        os.makedirs(event_dir, exist_ok=True)
        event_path = os.path.join(event_dir, "event.json")
        with open(event_path, "w", encoding="utf-8") as f:
            f.write(self.event)
        self.github["event_path"] = event_path
        self.github["action"] = step["id"]

    def env_context(self, step):
        env = dict(self.global_env)
        env.update(step.get("env") or {})
        return env

    def add_path_and_contexts(self, environment):
        if self.prepend:
            prepend = ":".join(reversed(self.prepend))
            original = environment.get("PATH")
            if original is None:
                original = os.environ.get("PATH", "")
            if not original:
                environment["PATH"] = prepend
            elif not original.startswith(prepend + ":"):
                environment["PATH"] = prepend + ":" + original
            else:
                environment["PATH"] = original
        for key, value in self.github.items():
            if key.lower() in GITHUB_EXPORTED:
                environment["GITHUB_" + upper(key)] = value
        for key, value in self.runner.items():
            environment["RUNNER_" + upper(key)] = value

    def log_for(self, step_id, phase):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", step_id)
        return Log(os.path.join(self.logs, f"{len(self.results):02}-{name}-{phase}.log"))

    def run_script(self, step):
        self.begin_step(step)
        self.github["action_repository"] = ""
        self.github["action_ref"] = ""
        log = self.log_for(step["id"], "main")
        environment = self.env_context(step)
        self.add_path_and_contexts(environment)
        script = os.path.join(self.temp, f"{uuid.uuid4()}.sh")
        with open(script, "wb") as f:
            f.write(step["run"].encode())
        shell = step.get("shell")
        if shell is None:
            path = which("bash", self.prepend) or which("sh", self.prepend)
            argv = [path, "-e", script]
        elif shell == "bash":
            path = which("bash", self.prepend)
            argv = [path, "--noprofile", "--norc", "-e", "-o", "pipefail", script]
        elif shell == "sh":
            path = which("sh", self.prepend)
            argv = [path, "-e", script]
        else:
            raise StandinError(f"step {step['id']}: the stand-in knows shell bash and sh, not {shell!r}")
        result = {"argv": argv if path else []}
        if path is None:
            log.error(f"{shell or 'sh'}: command not found")
            failed = True
        else:
            result.update(self.execute(argv, environment, log))
            failed = result["exit_code"] != 0
            if failed and not result["timed_out"] and result["exit_code"] is not None:
                log.error(f"Process completed with exit code {result['exit_code']}.")
        failed |= self.process_files(log, State(), result)
        self.finish(step["id"], "main", failed, result, log)

    def run_action(self, step, phase):
        self.begin_step(step)
        self.github["action_repository"] = self.action["repository"]
        self.github["action_ref"] = self.action["ref"]
        log = self.log_for(step["id"], phase)
        result = {"argv": []}
        failed = True
        try:
            failed = self.start_action(step, phase, log, result)
        finally:
            failed |= self.process_files(log, self.state, result)
            self.finish(step["id"], phase, failed, result, log)

    def start_action(self, step, phase, log, result):
        manifest = self.manifest()
        runs = manifest.get("runs") or {}
        if phase in ("pre", "main") and runs.get("post") and self.post_if is None:
            self.post_if = runs.get("post-if") or "always()"
        using = runs.get("using")
        if using not in NODE_VERSIONS:
            raise StandinError(f"the stand-in runs node actions only (runs.using is {using!r})")
        declared = manifest.get("inputs") or {}
        given = dict(step.get("with") or {})
        inputs = dict(given)
        lowered = {k.lower() for k in given}
        for name, spec in declared.items():
            if name.lower() not in lowered:
                default = (spec or {}).get("default") if isinstance(spec, dict) else None
                inputs[name] = evaluate(default or "", self.github)
        unexpected = [k for k in given if k.lower() not in {d.lower() for d in declared}]
        if unexpected:
            log.warning(
                "Unexpected input(s) '{}', valid inputs are ['{}']".format(
                    "', '".join(unexpected), "', '".join(declared)
                )
            )
        environment = self.env_context(step)
        for name, value in self.state.items():
            environment["STATE_" + name] = value
        for name, value in inputs.items():
            environment["INPUT_" + upper(name.replace(" ", "_"))] = value
        self.add_path_and_contexts(environment)
        script = runs.get(phase)
        if not script:
            log.error("Value cannot be null. (Parameter 'target')")
            return True
        target = os.path.join(self.action["dir"], script)
        if not os.path.isfile(target):
            log.error(f"File not found: '{target}'")
            return True
        argv = [self.node, target]
        maglev = "ACTIONS_RUNNER_DISABLE_NODE_MAGLEV"
        if using == "node24" and (truthy(os.environ.get(maglev)) or truthy(environment.get(maglev))):
            argv.insert(1, "--no-maglev")
        environment.pop("NODE_ICU_DATA", None)
        result["argv"] = argv
        result.update(self.execute(argv, environment, log))
        return result["exit_code"] != 0

    def execute(self, argv, environment, log):
        """Starts argv as the runner does and waits for it within the stand-in's bound."""
        env = dict(os.environ)
        env.update(environment)
        env["GITHUB_ACTIONS"] = "true"
        env.setdefault("CI", "true")
        # The C environment ends a name or a value at a NUL.
        env = {k.split("\0")[0]: v.split("\0")[0] for k, v in env.items()}
        outcome = {"exit_code": None, "signal": None, "timed_out": False, "output_held_open": False}
        try:
            child = subprocess.Popen(
                argv,
                cwd=self.workspace,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            log.error(f"An error occurred trying to start process '{argv[0]}' with working directory '{self.workspace}'. {e.strerror}")
            return outcome
        child.stdin.close()
        adj = environment.get("PIPELINE_JOB_OOMSCOREADJ", "")
        adj = adj if re.fullmatch(r"-?\d+", adj) and -1000 <= int(adj) <= 1000 else "500"
        try:
            with open(f"/proc/{child.pid}/oom_score_adj", "w") as f:
                f.write(adj)
        except OSError:
            pass
        readers = [
            threading.Thread(target=log.copy, args=(pipe,), daemon=True)
            for pipe in (child.stdout, child.stderr)
        ]
        for t in readers:
            t.start()
        try:
            status = child.wait(timeout=self.bound)
        except subprocess.TimeoutExpired:
            kill_tree(child.pid)
            status = child.wait()
            outcome["timed_out"] = True
            log.error(f"the stand-in's step bound of {self.bound:g} s was exceeded: the step's process tree was killed")
        deadline = time.monotonic() + OUTPUT_GRACE
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()))
        outcome["output_held_open"] = any(t.is_alive() for t in readers)
        if status < 0:
            outcome["signal"] = -status
            outcome["exit_code"] = 128 - status
        else:
            outcome["exit_code"] = status
        return outcome

    def process_files(self, log, state, result):
        """FileCommandManager.ProcessFiles; whether a command failed the step."""
        failed = False
        result["outputs"] = {}
        result["summary"] = None
        for key, _ in FILE_COMMANDS:
            path = self.files.get(key)
            if not path or not os.path.exists(path):
                continue
            try:
                if key == "path":
                    for line in re.split(r"\r\n|\r|\n", read_text(path)):
                        if line:
                            if line in self.prepend:
                                self.prepend.remove(line)
                            self.prepend.append(line)
                elif key == "env":
                    for name, value in env_file_pairs(read_text(path)):
                        if name.upper() == "NODE_OPTIONS":
                            log.error("Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.")
                            continue
                        self.global_env[name] = value
                        if not name:
                            raise FileCommandError("Value cannot be null. (Parameter 'name')")
                elif key == "step_summary":
                    size = os.path.getsize(path)
                    if size > SUMMARY_LIMIT:
                        log.error(
                            f"$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of "
                            f"{SUMMARY_LIMIT // 1024}k, got {size // 1024}k. For more information see: "
                            "https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions#adding-a-markdown-summary"
                        )
                    elif size:
                        result["summary"] = read_text(path)
                elif key == "state":
                    for name, value in env_file_pairs(read_text(path)):
                        state.set(name, value)
                elif key == "output":
                    for name, value in env_file_pairs(read_text(path)):
                        if not name:
                            raise FileCommandError("Value cannot be null. (Parameter 'name')")
                        result["outputs"][name] = value
            except FileCommandError as e:
                log.error(f"Unable to process file command '{key}' successfully.")
                log.error(str(e))
                failed = True
        return failed

    def finish(self, step_id, phase, failed, result, log):
        log.close()
        self.failed |= failed
        self.results.append(
            {
                "id": step_id,
                "phase": phase,
                "outcome": "failure" if failed else "success",
                "exit_code": result.get("exit_code"),
                "signal": result.get("signal"),
                "timed_out": result.get("timed_out", False),
                "output_held_open": result.get("output_held_open", False),
                "argv": result.get("argv", []),
                "log": log.path,
                "summary": result.get("summary"),
                "outputs": result.get("outputs", {}),
            }
        )

    def skip(self, step_id, phase):
        self.results.append(
            {
                "id": step_id,
                "phase": phase,
                "outcome": "skipped",
                "exit_code": None,
                "signal": None,
                "timed_out": False,
                "output_held_open": False,
                "argv": [],
                "log": None,
                "summary": None,
                "outputs": {},
            }
        )

    def clean_up(self, before):
        """The runner's orphan process clean-up at the end of the job."""
        marker = f"RUNNER_TRACKING_ID={self.tracking_id}".encode()
        log = Log(os.path.join(self.logs, "complete-job.log"))
        for pid, (_, name) in processes().items():
            if pid == os.getpid() or f"{pid}_{name}" in before:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                log.line(f"Terminate orphan process: pid ({pid}) ({name})")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                self.orphans.append({"pid": pid, "name": name})
        log.close()


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    worker = Worker(spec)
    error = None
    try:
        worker.run()
    except StandinError as e:
        error = str(e)
    result = {
        "version": 1,
        "conclusion": "failure" if worker.failed or error else "success",
        "error": error,
        "worker_pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "tracking_id": worker.tracking_id,
        "steps": worker.results,
        "orphans": worker.orphans,
    }
    partial = spec["result"] + ".part"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.rename(partial, spec["result"])
    return 2 if error else 0


if __name__ == "__main__":
    sys.exit(main())
