"""Run the documentation: every fenced code block of ``docs/`` is exercised by one exerciser.

Blocks are read from the Markdown source (page and line of the opening fence). An **exerciser**
claims blocks by their language and content; a block that no exerciser claims, or that several
claim, fails `test_docs_examples.py`, so a new block cannot go untested. Indented code blocks
count as blocks too (language ``indented``) and nothing claims them: use fences.

A page runs as one **session**: a fresh folder holding the quickstart's ``celeryconfig.py``
(the configuration every example loads), in which the page's blocks run in order, the way a
reader would follow them. The conventions, and who claims what:

=============================  ===============================================================
block                          exerciser
=============================  ===============================================================
``python``, first line         **program file**: written to the session folder under that name
``# name.py``                  (a worker loads it with ``-A name``, ``python name.py`` runs it);
                               a file that no command on the page uses is at least imported
``python``, first line         **project file**: written to that path under the session folder
``# dir/name.py``              (a Django project's ``proj/settings.py``, ``shop/views.py``...)
``python`` after               **fragment**: appended to the file ``name.py`` written by an
``<!-- continues: name.py -->``  earlier block of the page (the rest of that program)
``python``, first line         **settings**: every name it assigns must be a Celery setting or
``# celeryconfig.py``          a ``durable_*`` setting that ``DurableSettings.from_conf`` reads
                               with that value (run in a subprocess, in the session folder)
other ``python``               **script**: a complete program, run as ``python <file>`` in the
                               session folder; it must exit with status 0
``sh``                         **shell**: every line must be one of ``pip install ...`` (the
                               extras of ``celery-durable[...]`` must exist in pyproject.toml;
                               other packages must be installed), ``export VAR=URL`` (a variable
                               the configuration reads, a URL whose driver is installed),
                               ``celery -A m worker ...`` (started for real, in the background,
                               until the page ends), ``celery -A m flower ...`` (started; its
                               API must answer with the ``--basic-auth`` credentials and 401
                               without), ``celery -A m durable ui ...`` and ``durable
                               metrics ...`` (started, checked as Flower is), ``celery -A m durable ...`` (run; exit status 0),
                               ``python name.py`` (run; exit status 0; its output is kept for
                               the next block), ``python manage.py ...`` (a Django command, run;
                               exit status 0) or ``pytest ...`` (the page's test files, run
                               with this Python; exit status 0). ``# comments`` are allowed.
``console``                    **console**: each ``$ command`` (the ``celery`` and ``python``
                               commands above) runs once the instances in the store have
                               settled, and its stdout + stderr must match the lines that
                               follow it (see `matches`); an ``Error:`` line means exit status 1
``text`` right after a ``sh``  **output**: must match what that block's last ``python`` command
block ending in ``python ...``  printed
``text`` starting with         **message**: each message (a line ``XxxError: ...`` and its
``XxxError:``                  wrapped continuation lines) must be one that the real code
                               raises (``docs_messages.py`` produces them)
``ini``                        **systemd unit**: ``ExecStart`` must be a worker command the page
                               ran, and ``Environment=`` must set variables the configuration
                               reads, to URLs whose drivers are installed
``toml``                       **pyproject**: ``celery-durable[...]`` dependencies must name
                               existing extras
=============================  ===============================================================

Pages run on SQLite + kombu's ``filesystem://`` broker (no environment variables), and those in
`VARIANTS` also on PostgreSQL + Redis (a fresh database and a Redis db of their own, given through
``DURABLE_STORE_URL`` / ``CELERY_BROKER_URL``; the ``export`` lines of a page are checked, not
applied). Output is compared line by line; a line ``...`` stands for any number of lines, and
32-digit hex ids and UTC timestamps match any such value.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
_celery_script = Path(sys.executable).with_name("celery")
CELERY = [str(_celery_script)] if _celery_script.exists() else [PYTHON, "-m", "celery"]

#: the page whose ``celeryconfig.py`` block every session gets
CONFIG_PAGE = "quickstart.md"
#: pages that also run on PostgreSQL + Redis (the Redis db each one uses), or only there
VARIANTS: dict[str, list[str]] = {
    "quickstart.md": ["sqlite-filesystem", "postgresql-redis"],
    "deployment.md": ["postgresql-redis"],
    "django.md": ["postgresql-redis"],
}
REDIS_DBS = {"quickstart.md": 7, "deployment.md": 8, "django.md": 9}
#: pages that run another page's program files (deployment runs the quickstart's shop.py)
FILES_FROM = {"deployment.md": "quickstart.md"}
#: modules a page names without showing them (cli.md: an app without a Durable)
FIXTURES = {"cli.md": {"plain_app.py": 'from celery import Celery\n\napp = Celery("plain_app")\n'}}
#: seconds a program or command may take
COMMAND_TIMEOUT = 120.0
#: read-only commands whose output is compared again until it matches (or this many seconds)
RETRY_SECONDS = 15.0


# -- blocks ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One code block of a page."""

    page: str  # relative to docs/, e.g. "features/timers.md"
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directive: str | None = None  # an HTML comment on the line before: "continues: shop.py"
    index: int = 0  # position among the page's blocks

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def filename(self) -> str | None:
        """``name.py`` when the first line is ``# name.py`` (optionally followed by words)."""
        first = self.text.split("\n", 1)[0]
        found = re.match(r"^# ([\w.-]+\.py)\b", first)
        return found.group(1) if found else None

    @property
    def path(self) -> str | None:
        """``dir/name.py`` when the first line is ``# dir/name.py`` (a file in a folder)."""
        first = self.text.split("\n", 1)[0]
        found = re.match(r"^# ((?:[\w.-]+/)+[\w.-]+\.py)\b", first)
        return found.group(1) if found else None


_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_DIRECTIVE = re.compile(r"^<!--\s*(.*?)\s*-->$")


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced (and indented) code blocks of a Markdown page, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    directive: str | None = None
    previous_blank = True
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            indent, marks, lang = fence.groups()
            close = re.compile(rf"^ {{0,3}}{re.escape(marks[0])}{{{len(marks)},}}[ \t]*$")
            body, j = [], i + 1
            while j < len(lines) and not close.match(lines[j]):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            if j == len(lines):
                raise ValueError(f"{page}:{i + 1}: the code block is never closed")
            blocks.append(Block(page, i + 1, lang.lower(), "\n".join(body) + "\n", directive,
                                len(blocks)))
            directive, previous_blank, i = None, False, j + 1
            continue
        if previous_blank and (line.startswith("    ") or line.startswith("\t")) and \
                line.strip() and not re.match(r"^\s*([-*+]|\d+[.)])\s", line):
            body, j = [], i
            while j < len(lines) and (lines[j].startswith(("    ", "\t")) or not lines[j].strip()):
                body.append(lines[j].strip())
                j += 1
            blocks.append(Block(page, i + 1, "indented", "\n".join(body).strip() + "\n", None,
                                len(blocks)))
            directive, previous_blank, i = None, True, j
            continue
        comment = _DIRECTIVE.match(line.strip())
        if comment:
            directive = comment.group(1)
        elif line.strip():
            directive = None
        previous_blank = not line.strip()
        i += 1
    return blocks


def doc_pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))


@cache
def page_blocks(page: str) -> tuple[Block, ...]:
    return tuple(parse_blocks((DOCS / page).read_text(), page))


def all_blocks() -> list[Block]:
    return [block for page in doc_pages() for block in page_blocks(page)]


def variants(page: str) -> list[str]:
    return VARIANTS.get(page, ["sqlite-filesystem"])


# -- output matching -------------------------------------------------------------------------------

_VARYING = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00"  # ISO timestamps (JSON)
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"  # table timestamps
    r"|(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")  # generated ids (uuid4().hex)


def _line_regex(expected: str) -> re.Pattern[str]:
    parts, last = [], 0
    for found in _VARYING.finditer(expected):
        parts.append(re.escape(expected[last:found.start()]))
        text = found.group(0)
        if "T" in text:
            parts.append(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00")
        elif " " in text:
            parts.append(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        else:
            parts.append(r"[0-9a-f]{32}")
        last = found.end()
    parts.append(re.escape(expected[last:]))
    return re.compile("".join(parts))


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` has the lines of ``expected``: ``...`` alone on a line stands for any
    number of lines; ids and timestamps match any value of their shape."""
    want, got = _lines(expected), _lines(actual)

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_regex(want[i]).fullmatch(got[j]) is not None and \
            match(i + 1, j + 1)

    return match(0, 0)


# -- sessions --------------------------------------------------------------------------------------

class Skip(Exception):
    """The block cannot run here (a service or an optional package is missing)."""


@dataclass
class Result:
    outcome: str  # "passed", "failed" or "skipped"
    message: str = ""


@dataclass
class Command:
    argv: list[str]
    line: str

    @property
    def program(self) -> str:
        return self.argv[0]


class Session:
    """One run of one page in its own folder, with the environment of one variant."""

    def __init__(self, page: str, variant: str, folder: Path, env: dict[str, str]) -> None:
        self.page, self.variant, self.folder, self.env = page, variant, folder, env
        self.files: dict[str, str] = {}
        self.used: set[str] = set()
        self.background: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.workers: list[list[str]] = []
        self.last_output: str | None = None
        self.results: dict[str, Result] = {}
        self._store: Any = None
        self.folder.mkdir(parents=True, exist_ok=True)

    # files
    def write(self, name: str, text: str) -> None:
        self.files[name] = text
        (self.folder / name).write_text(text)

    def append(self, name: str, text: str) -> None:
        if name not in self.files:
            raise AssertionError(f"the fragment continues {name}, which no earlier block of the "
                                 "page writes")
        self.write(name, self.files[name].rstrip("\n") + "\n\n\n" + text)

    # processes
    def run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=self.folder, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}-{len(self.background)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=self.folder, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((name, proc, log))
        return proc

    def logs(self) -> str:
        parts = []
        for name, _proc, log in self.background:
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {name} log (last 3000 characters) ---\n{text[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM each process started here; SIGKILL its process group (which it leads) if it
        has not exited within 2 s: the page is done, and a Celery worker on the filesystem
        broker takes 5 to 7 s for a warm shutdown."""
        for _name, proc, _log in self.background:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in self.background:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._store is not None:
            self._store.dispose()

    # the store the page's programs use
    def store_url(self) -> str:
        return self.env.get("DURABLE_STORE_URL") or \
            f"sqlite:///{self.folder / 'celery_durable.sqlite3'}"

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until no instance is about to change by itself: none PENDING (unless delayed),
        no inbox waiting, no activity without a result."""
        if self._store is None:
            if self.store_url().startswith("sqlite") and \
                    not (self.folder / "celery_durable.sqlite3").exists():
                return
            from celery_durable.store import Store

            self._store = Store(self.store_url())
        store = self._store
        deadline = time.monotonic() + timeout
        while True:
            busy = []
            for record in store.query_instances(
                    statuses=["PENDING", "RUNNING", "SUSPENDED", "CONTINUED_AS_NEW"], limit=10000):
                iid = record.instance_id
                if record.status.value in ("PENDING", "CONTINUED_AS_NEW") and \
                        record.start_at is None:
                    busy.append(f"{iid} is {record.status.value}")
                elif store.inbox_size(iid):
                    busy.append(f"{iid} has events in its inbox")
                else:
                    history = store.get_history(iid)
                    scheduled = {e.task_id for e in history if e.kind == "TaskScheduled"}
                    done = {e.task_id for e in history if e.kind in ("TaskCompleted", "TaskFailed")}
                    if scheduled - done:
                        busy.append(f"{iid} waits for activities {sorted(scheduled - done)}")
            if not busy:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the instances did not settle within {timeout}s: {busy}\n"
                                     f"{self.logs()}")
            time.sleep(0.05)


# -- commands (lines of sh and console blocks) -----------------------------------------------------

def parse_command(line: str) -> Command | None:
    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return None
    return Command(argv, line) if argv else None


def _is(argv: list[str], program: str, sub: str | None = None) -> bool:
    if not argv or argv[0] != program:
        return False
    if sub is None:
        return True
    return len(argv) >= 4 and argv[1] == "-A" and re.fullmatch(r"\w+", argv[2]) is not None \
        and argv[3] == sub


def _pip_ok(argv: list[str]) -> bool:
    return len(argv) >= 3 and argv[:2] == ["pip", "install"]


def _export_ok(argv: list[str]) -> bool:
    return len(argv) == 2 and argv[0] == "export" and "=" in argv[1]


def _manage_ok(argv: list[str]) -> bool:
    return len(argv) >= 3 and argv[:2] == ["python", "manage.py"]


def _pytest_ok(argv: list[str]) -> bool:
    return len(argv) >= 2 and argv[0] == "pytest"


def _python_ok(argv: list[str]) -> bool:
    return len(argv) == 2 and argv[0] == "python" and re.fullmatch(r"[\w-]+\.py", argv[1]) is not None


COMMAND_KINDS: dict[str, Callable[[list[str]], bool]] = {
    "pip install": _pip_ok,
    "export": _export_ok,
    "celery worker": lambda a: _is(a, "celery", "worker"),
    "celery flower": lambda a: _is(a, "celery", "flower"),
    "celery durable": lambda a: _is(a, "celery", "durable"),
    "python": _python_ok,
    "manage.py": _manage_ok,
    "pytest": _pytest_ok,
}


def command_kind(command: Command) -> str | None:
    kinds = [kind for kind, ok in COMMAND_KINDS.items() if ok(command.argv)]
    return kinds[0] if len(kinds) == 1 else None


def _shell_lines(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and
            not line.strip().startswith("#")]


def _console_steps(text: str) -> list[tuple[str, str]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            return []  # output before any command: not a console block we understand
    return [(command, "\n".join(out)) for command, out in steps]


@cache
def pyproject_extras() -> frozenset[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return frozenset(data["project"]["optional-dependencies"])


def check_requirement(spec: str) -> None:
    from packaging.requirements import Requirement

    requirement = Requirement(spec)
    if requirement.name.lower().replace("_", "-") == "celery-durable":
        unknown = set(requirement.extras) - pyproject_extras()
        assert not unknown, (f"{spec!r}: no such extra {sorted(unknown)} in pyproject.toml "
                             f"(extras: {sorted(pyproject_extras())})")
    else:
        try:
            importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"{spec!r}: {requirement.name} is not installed, so the example "
                                 "that needs it was not run with it") from None


@cache
def config_variables() -> frozenset[str]:
    """The environment variables the shared celeryconfig.py reads (Celery reads the first)."""
    config = next(b for b in page_blocks(CONFIG_PAGE) if b.filename == "celeryconfig.py")
    return frozenset({"CELERY_BROKER_URL", *re.findall(r'os\.environ\.get\("(\w+)"', config.text)})


_DRIVERS = {"redis": "redis", "rediss": "redis", "amqp": "amqp", "pyamqp": "amqp",
            "filesystem": None, "memory": None}


def check_variable(name: str, value: str) -> None:
    assert name in config_variables(), (f"{name} is not read by the configuration "
                                        f"(it reads {sorted(config_variables())})")
    if name == "CELERY_BROKER_URL":
        scheme = value.split("://", 1)[0]
        assert scheme in _DRIVERS, f"unknown broker URL scheme {scheme!r} in {value!r}"
        driver = _DRIVERS[scheme]
        assert driver is None or importlib.util.find_spec(driver), \
            f"{value!r} needs the {driver!r} package"
    else:
        from sqlalchemy.engine import make_url

        make_url(value).get_dialect().import_dbapi()  # the driver is installed


def run_python(session: Session, name: str) -> str:
    proc = session.run([PYTHON, name])
    session.used.add(name)
    assert proc.returncode == 0, (f"python {name} exited with status {proc.returncode}\n"
                                  f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n"
                                  f"{session.logs()}")
    return proc.stdout


def run_pytest(session: Session, argv: list[str]) -> str:
    session.used.update(arg for arg in argv[1:] if arg.endswith(".py"))
    proc = session.run([PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *argv[1:]])
    assert proc.returncode == 0, (f"{' '.join(argv)} exited with status {proc.returncode}\n"
                                  f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def run_celery(session: Session, argv: list[str]) -> subprocess.CompletedProcess[str]:
    session.used.add(f"{argv[2]}.py")
    return session.run([*CELERY, *argv[1:]])


def start_worker(session: Session, argv: list[str]) -> None:
    session.used.add(f"{argv[2]}.py")
    session.start("worker", [*CELERY, *argv[1:]])
    session.workers.append(argv)


def start_flower(session: Session, argv: list[str]) -> None:
    if importlib.util.find_spec("flower") is None:
        raise Skip("flower is not installed (pip install 'celery-durable[flower]')")
    _start_http(session, "flower", argv, 5555, "/api/workers")


def start_dashboard(session: Session, argv: list[str]) -> None:
    """``celery -A m durable ui ...``: started like Flower, its JSON API checked the same way."""
    if importlib.util.find_spec("tornado") is None:
        raise Skip("tornado is not installed (pip install 'celery-durable[ui]')")
    session.used.add(f"{argv[2]}.py")
    _start_http(session, "dashboard", argv, 5566, "/api/instances")


def start_metrics(session: Session, argv: list[str]) -> None:
    """``celery -A m durable metrics ...``: started like the dashboard, ``/metrics`` checked."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise Skip("prometheus_client is not installed (pip install 'celery-durable[metrics]')")
    session.used.add(f"{argv[2]}.py")
    _start_http(session, "metrics exporter", argv, 9808, "/metrics")


def _start_http(session: Session, name: str, argv: list[str], default_port: int,
                path: str) -> None:
    """Start a web server command in the background; ``path`` must answer 200 with the
    ``--basic-auth`` credentials and 401 without."""
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    for i, arg in enumerate(argv[:-1]):  # also --option value
        if arg.startswith("--") and "=" not in arg and not argv[i + 1].startswith("--"):
            options.setdefault(arg[2:], argv[i + 1])
    port = int(options.get("port", default_port))
    user, _, password = options.get("basic-auth", ":").partition(":")
    proc = session.start(name, [*CELERY, *argv[1:]])
    url = f"http://127.0.0.1:{port}{path}"
    token = b64encode(f"{user}:{password}".encode()).decode()
    deadline, last = time.monotonic() + 45, ""
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{name} exited with status {proc.returncode}\n{session.logs()}"
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = repr(exc)
            time.sleep(0.3)
    else:
        raise AssertionError(f"{name} did not answer {url} within 45 s ({last})\n{session.logs()}")
    try:
        urllib.request.urlopen(url, timeout=5)
        raise AssertionError(f"{url} answered without credentials")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401, f"{url} without credentials answered {exc.code}, not 401"


def run_command(session: Session, command: Command, expect_success: bool = True
                ) -> subprocess.CompletedProcess[str] | None:
    """Run one recognised command line of a sh block."""
    kind, argv = command_kind(command), command.argv
    if kind == "pip install":
        for spec in argv[2:]:
            if not spec.startswith("-"):
                check_requirement(spec)
    elif kind == "export":
        name, _, value = argv[1].partition("=")
        check_variable(name, value)
    elif kind == "celery worker":
        start_worker(session, argv)
    elif kind == "celery flower":
        start_flower(session, argv)
    elif kind == "celery durable" and argv[4:5] == ["ui"]:
        start_dashboard(session, argv)
    elif kind == "celery durable" and argv[4:5] == ["metrics"]:
        start_metrics(session, argv)
    elif kind == "celery durable":
        proc = run_celery(session, argv)
        if expect_success:
            assert proc.returncode == 0, (f"{command.line} exited with status {proc.returncode}"
                                          f"\n{proc.stdout}{proc.stderr}")
        return proc
    elif kind == "python":
        session.last_output = run_python(session, argv[1])
    elif kind == "manage.py":
        session.used.add("manage.py")
        proc = session.run([PYTHON, *argv[1:]])
        assert proc.returncode == 0, (f"{command.line} exited with status {proc.returncode}\n"
                                      f"{proc.stdout}{proc.stderr}\n{session.logs()}")
        session.last_output = proc.stdout
    elif kind == "pytest":
        session.last_output = run_pytest(session, argv)
    else:
        raise AssertionError(f"unrecognised command {command.line!r}")
    return None


# -- exercisers ------------------------------------------------------------------------------------

class Exerciser:
    name = "?"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        raise NotImplementedError

    def run(self, block: Block, session: Session) -> None:
        raise NotImplementedError


class ProgramFile(Exerciser):
    name = "program file"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "python" and block.filename not in (None, "celeryconfig.py") and \
            block.directive is None

    def run(self, block: Block, session: Session) -> None:
        assert block.filename is not None
        session.write(block.filename, block.text)


class ProjectFile(Exerciser):
    name = "project file"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "python" and block.path is not None and block.directive is None

    def run(self, block: Block, session: Session) -> None:
        assert block.path is not None
        (session.folder / block.path).parent.mkdir(parents=True, exist_ok=True)
        session.write(block.path, block.text)


class Fragment(Exerciser):
    name = "fragment"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "python" and block.directive is not None and \
            re.fullmatch(r"continues: [\w-]+\.py", block.directive) is not None

    def run(self, block: Block, session: Session) -> None:
        assert block.directive is not None
        session.append(block.directive.split(": ", 1)[1], block.text)


class Settings(Exerciser):
    name = "settings"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "python" and block.filename == "celeryconfig.py" and \
            block.directive is None

    def run(self, block: Block, session: Session) -> None:
        path = session.folder / f"_settings_{block.line}.py"
        path.write_text(block.text)
        proc = session.run([PYTHON, str(HERE / "docs_settings_check.py"), str(path)])
        assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}"
        problems = json.loads(proc.stdout)
        assert not problems, "\n".join(problems)


class Script(Exerciser):
    name = "script"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "python" and block.filename is None and block.path is None and \
            block.directive is None

    def run(self, block: Block, session: Session) -> None:
        name = f"{Path(block.page).stem.replace('-', '_')}_{block.line}.py"
        session.write(name, block.text)
        session.last_output = run_python(session, name)


class Shell(Exerciser):
    name = "shell"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        if block.lang not in ("sh", "bash", "shell"):
            return False
        commands = [parse_command(line) for line in _shell_lines(block.text)]
        return bool(commands) and all(c is not None and command_kind(c) for c in commands)

    def run(self, block: Block, session: Session) -> None:
        session.last_output = None
        for line in _shell_lines(block.text):
            command = parse_command(line)
            assert command is not None
            run_command(session, command)


class Console(Exerciser):
    name = "console"
    READ_ONLY = ("list", "show", "history", "--help")

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        if block.lang != "console":
            return False
        steps = _console_steps(block.text)
        commands = [parse_command(command) for command, _ in steps]
        return bool(steps) and all(c is not None and command_kind(c) in ("celery durable",
                                                                          "python")
                                   for c in commands)

    def run(self, block: Block, session: Session) -> None:
        for line, expected in _console_steps(block.text):
            command = parse_command(line)
            assert command is not None
            session.settle()
            if command_kind(command) == "python":
                actual, code = run_python(session, command.argv[1]), 0
                read_only = False
            else:
                argv = command.argv
                read_only = (len(argv) > 4 and argv[4] in self.READ_ONLY) or "--dry-run" in argv
                deadline = time.monotonic() + RETRY_SECONDS
                while True:
                    proc = run_celery(session, argv)
                    actual, code = proc.stdout + proc.stderr, proc.returncode
                    if matches(expected, actual) or not read_only or \
                            time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
            wanted = 1 if any(x.startswith("Error: ") for x in expected.splitlines()) else 0
            assert matches(expected, actual), (
                f"$ {line}\n--- the page shows ---\n{expected}\n--- the command printed "
                f"(status {code}) ---\n{actual}\n{session.logs()}")
            assert code == wanted, f"$ {line}: exit status {code}, expected {wanted}\n{actual}"


def _previous(block: Block, blocks: tuple[Block, ...]) -> Block | None:
    return blocks[block.index - 1] if block.index > 0 else None


class Output(Exerciser):
    name = "output"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        before = _previous(block, blocks)
        if block.lang != "text" or before is None or before.lang not in ("sh", "bash", "shell"):
            return False
        lines = _shell_lines(before.text)
        last = parse_command(lines[-1]) if lines else None
        return last is not None and command_kind(last) == "python"

    def run(self, block: Block, session: Session) -> None:
        actual = session.last_output
        assert actual is not None, "the block before did not run its program"
        assert matches(block.text, actual), (f"--- the page shows ---\n{block.text}\n--- the "
                                             f"program printed ---\n{actual}")


_MESSAGE_START = re.compile(r"^[A-Z]\w*Error: ")


def split_messages(text: str) -> list[str]:
    messages: list[str] = []
    for line in text.strip("\n").splitlines():
        if _MESSAGE_START.match(line) or not messages:
            messages.append(line.strip())
        else:
            messages[-1] += " " + line.strip()
    return messages


@cache
def real_messages() -> frozenset[str]:
    """The messages `docs_messages.py` gets from the real code (in a process of its own, so
    that no other module's registrations show in them)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CELERY_BROKER_URL", "DURABLE_STORE_URL")}
        proc = subprocess.run([PYTHON, str(HERE / "docs_messages.py")], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return frozenset(json.loads(proc.stdout))


class Message(Exerciser):
    name = "message"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "text" and _MESSAGE_START.match(block.text) is not None

    def run(self, block: Block, session: Session) -> None:
        known = real_messages()
        for message in split_messages(block.text):
            assert message in known, (f"the code raises no such message:\n{message}\n"
                                      "--- messages it raises ---\n" + "\n".join(sorted(known)))


class SystemdUnit(Exerciser):
    name = "systemd unit"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "ini"

    def run(self, block: Block, session: Session) -> None:
        parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(block.text)
        service = parser["Service"]
        argv = shlex.split(service["ExecStart"])
        assert Path(argv[0]).name == "celery", f"ExecStart runs {argv[0]}, not celery"
        ran = [worker[1:] for worker in session.workers]
        assert argv[1:] in ran, (f"ExecStart {argv[1:]} is not a worker command that this page "
                                 f"ran ({ran})")
        environment = [line.split("=", 1)[1] for line in block.text.splitlines()
                       if line.startswith("Environment=")]
        assert environment, "the unit sets no Environment="
        for assignment in environment:
            name, _, value = assignment.partition("=")
            check_variable(name, value)


class Pyproject(Exerciser):
    name = "pyproject"

    def claims(self, block: Block, blocks: tuple[Block, ...]) -> bool:
        return block.lang == "toml"

    def run(self, block: Block, session: Session) -> None:
        data = tomllib.loads(block.text)
        dependencies = data["project"]["dependencies"]
        assert any(d.startswith("celery-durable") for d in dependencies), dependencies
        for spec in dependencies:
            check_requirement(spec)


EXERCISERS: list[Exerciser] = [ProgramFile(), ProjectFile(), Fragment(), Settings(), Script(),
                               Shell(), Console(), Output(), Message(), SystemdUnit(),
                               Pyproject()]


def claimers(block: Block, blocks: tuple[Block, ...] | None = None) -> list[Exerciser]:
    blocks = page_blocks(block.page) if blocks is None else blocks
    return [e for e in EXERCISERS if e.claims(block, blocks)]


# -- running pages ---------------------------------------------------------------------------------

@contextlib.contextmanager
def variant_env(page: str, variant: str) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CELERY_BROKER_URL", "DURABLE_STORE_URL", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's package, whichever one is installed
    env["PYTHONWARNINGS"] = "ignore:You're running the worker with superuser privileges"
    if variant == "sqlite-filesystem":
        yield env
        return
    from services import REDIS_URL, database, reachable

    for service in ("postgresql", "redis"):
        if not reachable(service):
            raise Skip(f"{service} is not running on 127.0.0.1")
    import redis

    broker = f"{REDIS_URL}/{REDIS_DBS[page]}"
    client = redis.Redis.from_url(broker)
    client.flushdb()  # this page's own db: nothing left from an earlier run
    try:
        with database("postgresql", "durable_docs") as store:
            from sqlalchemy.engine import make_url

            # (a Django page's settings name the database: DATABASES["default"]["NAME"])
            yield {**env, "CELERY_BROKER_URL": broker, "DURABLE_STORE_URL": store,
                   "DJANGO_DB_NAME": str(make_url(store).database)}
    finally:
        client.flushdb()
        client.close()


def run_page(page: str, variant: str, folder: Path) -> dict[str, Result]:
    """Run every block of ``page``; the result of each block by its id."""
    blocks = page_blocks(page)
    results: dict[str, Result] = {}
    try:
        with variant_env(page, variant) as env:
            session = Session(page, variant, folder, env)
            try:
                _run_blocks(session, blocks, results)
            finally:
                session.stop()
    except Skip as exc:
        for block in blocks:
            results.setdefault(block.id, Result("skipped", str(exc)))
    except Exception:
        failure = traceback.format_exc()
        for block in blocks:
            results.setdefault(block.id, Result("failed", f"the page's session failed:\n{failure}"))
    return results


def _run_blocks(session: Session, blocks: tuple[Block, ...], results: dict[str, Result]) -> None:
    config = next(b for b in page_blocks(CONFIG_PAGE) if b.filename == "celeryconfig.py")
    session.write("celeryconfig.py", config.text)
    for name, text in FIXTURES.get(session.page, {}).items():
        session.write(name, text)
    source = FILES_FROM.get(session.page)
    if source is not None:
        for block in page_blocks(source):
            if isinstance(only(block), (ProgramFile, Fragment)):
                only(block).run(block, session)
    for block in blocks:
        found = claimers(block, blocks)
        if len(found) != 1:
            results[block.id] = Result("failed", f"{len(found)} exercisers claim this block: "
                                                 f"{[e.name for e in found]}")
            continue
        try:
            found[0].run(block, session)
        except Skip as exc:
            results[block.id] = Result("skipped", str(exc))
        except Exception:
            results[block.id] = Result("failed", traceback.format_exc())
        else:
            results[block.id] = Result("passed")
    for block in blocks:  # program files no command used are at least imported
        if isinstance(only(block), ProgramFile) and block.filename not in session.used and \
                results[block.id].outcome == "passed":
            module = block.filename.removesuffix(".py")  # type: ignore[union-attr]
            proc = session.run([PYTHON, "-c", f"import {module}"])
            if proc.returncode != 0:
                results[block.id] = Result("failed", f"import {module} failed:\n{proc.stderr}")
    for block in blocks:  # a worker that crashed or logged a traceback fails its block
        if block.lang in ("sh", "bash", "shell") and "worker" in block.text:
            problems = [(name, log) for name, proc, log in session.background
                        if name == "worker" and ("Traceback (most recent call last)" in
                                                 log.read_text(errors="replace"))]
            if problems and results[block.id].outcome == "passed":
                results[block.id] = Result("failed", "a worker logged a traceback\n" +
                                           session.logs())


def only(block: Block) -> Exerciser | None:
    found = claimers(block)
    return found[0] if len(found) == 1 else None


@dataclass
class Runs:
    """Results of every page run: ``results[(block id, variant)]``."""

    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
