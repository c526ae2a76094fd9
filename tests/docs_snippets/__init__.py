"""Run the annotated code blocks of the docs in a new project.

Each fenced block of a page covered by the test is preceded by an HTML comment
that says what to do with it (MkDocs renders the comment as nothing):

- ``<!-- snippet: run -->``: shell commands, run one by one. ``django-admin``
  and ``python`` run with the test's interpreter, ``cd`` changes directory,
  ``curl`` sends its request to the project, ``manage.py runserver`` is
  noted but not started (the requests go through Django's test client in a
  ``manage.py shell`` process). Any other command is an error.
- ``<!-- snippet: write PATH -->`` / ``<!-- snippet: append PATH -->``: the
  block is the content of the file, or is added at its end.
- ``<!-- snippet: output -->``: what the last command of the previous ``run``
  block prints, or the response to its ``curl``.
- ``<!-- snippet: resend -->``: the response when the last ``curl`` is sent
  again.
- ``<!-- snippet: skip: REASON -->``: not run.

Values the docs can only show as examples (tokens, request ids: 32 or more
lower-case hex digits) are placeholders. The first time one appears in an
expected output it stands for whatever the project printed there; afterwards
it must be that same value, and commands that use it get the real one. So the
token printed by ``drf_create_token`` is the one the ``curl`` lines send, and a
replay must carry the first response's ``X-Request-Id``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
CLIENT_SCRIPT = Path(__file__).with_name("send_requests.py")

_ANNOTATION = re.compile(r"^\s*<!--\s*snippet:\s*(?P<spec>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
PLACEHOLDER = re.compile(r"\b[0-9a-f]{32,}\b")
# Headers whose absence is a claim too: a first answer is not a replay.
_ABSENT_UNLESS_SHOWN = ("Idempotent-Replayed", "Retry-After")
# Django 5.2's shell announces its automatic imports on stdout.
_SHELL_NOISE = re.compile(r"^\d+ objects? imported automatically.*$\n?", re.MULTILINE)


class SnippetError(AssertionError):
    """A block of the docs does not do what the docs say."""


@dataclass
class Block:
    page: str
    line: int
    spec: str | None
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        return (self.spec or "").split(":")[0].split()[0] if self.spec else ""

    @property
    def argument(self) -> str:
        assert self.spec is not None
        return self.spec[len(self.kind) :].lstrip(" :")


KINDS = {"run", "write", "append", "output", "resend", "skip"}


def blocks_of(page: str) -> list[Block]:
    """Every fenced block of ``docs/<page>``, with the annotation before it."""
    lines = (DOCS / page).read_text().splitlines()
    blocks: list[Block] = []
    spec: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        annotation = _ANNOTATION.match(line)
        fence = _FENCE.match(line)
        if annotation:
            if spec is not None:
                raise SnippetError(f"docs/{page}:{index + 1}: two annotations in a row")
            spec = annotation["spec"]
        elif fence:
            indent, marker = fence["indent"], fence["fence"]
            closing = re.compile(f"{re.escape(indent + marker[0])}{{{len(marker)},}} *")
            body: list[str] = []
            index += 1
            while index < len(lines) and not closing.fullmatch(lines[index]):
                body.append(lines[index])
                index += 1
            text = textwrap.dedent("\n".join(body)) + "\n"
            lang = fence["info"].strip().split(" ")[0]
            blocks.append(Block(page, index - len(body), spec, lang, text))
            spec = None
        elif line.strip() and spec is not None:
            raise SnippetError(f"docs/{page}:{index + 1}: text between an annotation and its block")
        index += 1
    return blocks


def annotation_problems(blocks: list[Block]) -> list[str]:
    problems = []
    for block in blocks:
        if block.spec is None:
            problems.append(f"{block.where}: no <!-- snippet: ... --> annotation")
        elif block.kind not in KINDS:
            problems.append(f"{block.where}: unknown annotation {block.spec!r}")
        elif block.kind in {"write", "append", "skip"} and not block.argument:
            problems.append(f"{block.where}: {block.kind} needs a path or a reason")
    return problems


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    where: str


@dataclass
class Expected:
    request: Request
    block: Block


def parse_curl(words: list[str], where: str) -> Request:
    """The request curl would send for ``words`` (``curl`` included)."""
    method, url, body = None, None, None
    headers: dict[str, str] = {}
    args = iter(words[1:])
    for word in args:
        if word in ("-i", "--include", "-s", "--silent", "-S", "--show-error"):
            continue
        if word in ("-X", "--request"):
            method = next(args)
        elif word in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-raw"):
            body = next(args)
        elif word.startswith(("http://", "https://")) and url is None:
            url = word
        else:
            raise SnippetError(f"{where}: the test does not know curl's {word!r}")
    if url is None:
        raise SnippetError(f"{where}: curl without a URL")
    parts = urlsplit(url)
    # What curl adds by itself; the fingerprint covers Accept and Content-Type.
    headers = {"Host": parts.netloc, "User-Agent": "curl/8", "Accept": "*/*", **headers}
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Request(
        method or ("POST" if body is not None else "GET"), path, headers, body or "", where
    )


def _logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


@dataclass
class Project:
    """A new project, built by the blocks of the docs in a temporary directory."""

    root: Path
    cwd: Path = field(init=False)
    bindings: dict[str, str] = field(default_factory=dict)
    served_from: Path | None = None
    pending: list[tuple[Request, Block | None]] = field(default_factory=list)
    last_request: Request | None = None
    last_output: str | None = None
    log: list[str] = field(default_factory=list)
    answers_checked: int = 0
    outputs_checked: int = 0

    def __post_init__(self) -> None:
        self.cwd = self.root

    # The blocks ---------------------------------------------------------

    def apply(self, block: Block) -> None:
        kind = block.kind
        if kind == "skip":
            return
        if kind in ("write", "append"):
            self.flush()
            path = self._inside(self.cwd / block.argument.split()[0], block)
            if kind == "append":
                if not path.exists():
                    raise SnippetError(f"{block.where}: {path.name} to append to does not exist")
                path.write_text(path.read_text().rstrip("\n") + "\n\n\n" + block.text)
            else:
                if not path.parent.is_dir():
                    raise SnippetError(f"{block.where}: no directory {path.parent}")
                path.write_text(block.text)
            return
        if kind == "run":
            for line in _logical_lines(block.text):
                self._command(shlex.split(line, comments=True), block)
            return
        if kind == "output":
            if self.last_output is None and not self.pending:
                raise SnippetError(f"{block.where}: an output with no command before it")
            if self.last_output is None:
                request, expected = self.pending[-1]
                if expected is not None:
                    raise SnippetError(f"{block.where}: two outputs for one request")
                self.pending[-1] = (request, block)
            else:
                actual = _SHELL_NOISE.sub("", self.last_output).strip()
                self.match_text(block.text.strip(), actual, block)
                self.outputs_checked += 1
            return
        if kind == "resend":
            if self.last_request is None:
                raise SnippetError(f"{block.where}: no request to send again")
            self.pending.append((self.last_request, block))
            return
        raise SnippetError(f"{block.where}: unknown annotation {block.spec!r}")

    def _command(self, words: list[str], block: Block) -> None:
        if not words:
            return
        program, args = words[0], words[1:]
        if program == "curl":
            if self.served_from is None:
                raise SnippetError(f"{block.where}: a request before `manage.py runserver`")
            words = [self.substitute(word) for word in words]
            self.last_request = parse_curl(words, block.where)
            self.last_output = None
            self.pending.append((self.last_request, None))
            return
        self.flush()
        if program == "cd" and len(args) == 1:
            self.cwd = self._inside(self.cwd / args[0], block)
            self.last_output = ""
        elif program == "python" and args[:2] == ["manage.py", "runserver"]:
            self.served_from = self.cwd
            self.last_output = ""
        elif program == "python":
            self.last_output = self._run([sys.executable, *args], block)
        elif program == "django-admin":
            self.last_output = self._run([sys.executable, "-m", "django", *args], block)
        else:
            raise SnippetError(f"{block.where}: the test cannot run {program!r}")

    def _inside(self, path: Path, block: Block) -> Path:
        path = path.resolve()
        if not path.is_relative_to(self.root):
            raise SnippetError(f"{block.where}: {path} is outside the project directory")
        return path

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        # The app of this checkout, whether it is installed or not.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def _run(self, command: list[str], block: Block) -> str:
        words = [self.substitute(word) for word in command]
        self.log.append(f"$ {shlex.join(words[1:] if words[0] == sys.executable else words)}")
        result = subprocess.run(
            words, cwd=self.cwd, env=self._env(), capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise SnippetError(
                f"{block.where}: `{shlex.join(command[1:])}` exited with {result.returncode}\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    # Requests -----------------------------------------------------------

    def flush(self) -> None:
        """Send the queued requests, in order, and compare their responses."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        assert self.served_from is not None
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump([vars(request) for request, _ in pending], file)
        try:
            env = {**self._env(), "DOCS_SNIPPETS_REQUESTS": file.name}
            result = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", CLIENT_SCRIPT.read_text()],
                cwd=self.served_from,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            os.unlink(file.name)
        marker = "--- responses ---\n"
        if result.returncode != 0 or marker not in result.stdout:
            raise SnippetError(
                f"{pending[0][0].where}: the requests failed\n{result.stdout}{result.stderr}"
            )
        responses = json.loads(result.stdout.split(marker, 1)[1])
        for (request, expected), response in zip(pending, responses, strict=True):
            self.log.append(f"{request.method} {request.path} -> {response['status']}")
            if expected is None:
                raise SnippetError(f"{request.where}: a request without its documented answer")
            self.match_response(expected, request, response)
            self.answers_checked += 1

    def match_response(self, block: Block, request: Request, response: dict[str, Any]) -> None:
        head, _, body = block.text.partition("\n\n")
        status_line, *header_lines = head.splitlines()
        shown = f"{block.where}: {request.method} {request.path} answered\n{_format(response)}"
        status = int(status_line.split()[1])
        if response["status"] != status:
            raise SnippetError(f"{shown}\nnot the documented {status_line}")
        actual = {name.lower(): value for name, value in response["headers"].items()}
        documented = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            documented[name.strip().lower()] = value.strip()
            if name.strip().lower() not in actual:
                raise SnippetError(f"{shown}\nwithout the documented {line.strip()}")
            self.match_text(value.strip(), actual[name.strip().lower()], block)
        for name in _ABSENT_UNLESS_SHOWN:
            if name.lower() in actual and name.lower() not in documented:
                raise SnippetError(f"{shown}\nwith {name}, which the docs do not show")
        if not body.strip():
            return
        if actual.get("content-type", "").split(";")[0].endswith("json"):
            try:
                same = json.loads(body) == json.loads(response["body"])
            except ValueError as error:
                raise SnippetError(f"{shown}\nunreadable JSON: {error}") from error
        else:
            same = body.strip() == response["body"].strip()
        if not same:
            raise SnippetError(f"{shown}\nnot the documented body\n{body}")

    # Placeholders -------------------------------------------------------

    def substitute(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.bindings.get(m[0], m[0]), text)

    def match_text(self, documented: str, actual: str, block: Block) -> None:
        """``actual`` is ``documented``, with its placeholders bound to real values."""
        pattern, names = "", list[str]()
        position = 0
        for found in PLACEHOLDER.finditer(documented):
            pattern += re.escape(documented[position : found.start()])
            if found[0] in self.bindings:
                pattern += re.escape(self.bindings[found[0]])
            elif found[0] in names:
                pattern += f"(?P=p{names.index(found[0])})"
            else:
                pattern += f"(?P<p{len(names)}>[0-9a-f]{{32,}})"
                names.append(found[0])
            position = found.end()
        pattern += re.escape(documented[position:])
        matched = re.fullmatch(pattern, actual)
        if matched is None:
            raise SnippetError(
                f"{block.where}: documented\n{documented}\nbut got\n{actual}\n"
                f"(placeholders seen so far: {self.bindings})"
            )
        for number, name in enumerate(names):
            value = matched[f"p{number}"]
            if value in self.bindings.values():
                raise SnippetError(
                    f"{block.where}: {name} is a new value in the docs, but the project "
                    f"answered {value}, which an earlier block showed as another one"
                )
            self.bindings[name] = value


def _format(response: dict[str, Any]) -> str:
    headers = "".join(f"{name}: {value}\n" for name, value in response["headers"].items())
    return f"{response['status']}\n{headers}\n{response['body']}"
