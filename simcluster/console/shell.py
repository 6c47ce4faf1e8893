"""A small subset of bash command-line syntax: quoting, parameter expansion, lists and redirections.

Enough for what people and test suites type on a serial console: ``echo "$?"``, ``cmd; echo $?``,
``a && b || c``, ``ping ... >/dev/null 2>&1``, ``# comments``. Pipelines, globbing and
command substitution are not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_OPERATORS = ("2>&1", "1>&2", ">&2", "&>>", "&>", "2>>", "2>", "1>>", "1>", ">>", ">", "<", "&&", "||", ";", "|", "&")
_LIST_OPS = frozenset({"&&", "||", ";", "&"})
_REDIRECTS = frozenset({"2>&1", "1>&2", ">&2", "&>>", "&>", "2>>", "2>", "1>>", "1>", ">>", ">", "<"})
_NEEDS_TARGET = _REDIRECTS - {"2>&1", "1>&2", ">&2"}
_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + "0123456789"
_SPECIAL_PARAMS = "?$#0!-"


class Incomplete(Exception):
    """The line ends inside a quote or after a backslash: bash asks for more with PS2."""


class Unsupported(Exception):
    """Valid bash this small shell does not run (pipelines)."""


class ShellSyntaxError(Exception):
    """bash's ``syntax error near unexpected token `X'``."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


@dataclass(slots=True)
class Command:
    """One simple command of a list: how it joins the previous one, its words and where fd 1/2 go."""

    connector: str  # ";" for the first command and after ";", "&&" or "||"
    argv: list[str]
    assignments: list[tuple[str, str]] = field(default_factory=list)
    stdout: str = "tty"  # "tty" or "null" (any file: output leaves the screen)
    stderr: str = "tty"
    stdin_file: str | None = None


@dataclass(slots=True)
class _Word:
    text: str
    quoted: bool  # some part was quoted: not an operator, not an assignment candidate after quotes
    operator: bool = False


def _expand_param(line: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the parameter whose ``$`` is at ``i``; return (value, index after it)."""
    n = len(line)
    j = i + 1
    if j >= n:
        return "$", j
    c = line[j]
    if c in _SPECIAL_PARAMS or c.isdigit():
        return env.get(c, ""), j + 1
    if c == "{":
        end = line.find("}", j + 1)
        if end < 0:
            raise Incomplete
        name = line[j + 1 : end]
        return env.get(name, ""), end + 1
    if c in _NAME_START:
        k = j
        while k < n and line[k] in _NAME_CHARS:
            k += 1
        return env.get(line[j:k], ""), k
    return "$", j


def tokenize(line: str, env: Mapping[str, str]) -> list[_Word]:
    """Split and expand one input line into words and operators."""
    words: list[_Word] = []
    buf: list[str] = []
    started = False
    quoted = False
    i, n = 0, len(line)

    def flush() -> None:
        nonlocal buf, started, quoted
        if started:
            words.append(_Word("".join(buf), quoted))
        buf, started, quoted = [], False, False

    while i < n:
        c = line[i]
        if c in " \t\n":
            flush()
            i += 1
        elif c == "#" and not started:
            break
        elif c == "\\":
            if i + 1 >= n:
                raise Incomplete
            buf.append(line[i + 1])
            started = quoted = True
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise Incomplete
            buf.append(line[i + 1 : end])
            started = quoted = True
            i = end + 1
        elif c == '"':
            started = quoted = True
            i += 1
            while True:
                if i >= n:
                    raise Incomplete
                d = line[i]
                if d == '"':
                    i += 1
                    break
                if d == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
                    buf.append(line[i + 1])
                    i += 2
                elif d == "$":
                    value, i = _expand_param(line, i, env)
                    buf.append(value)
                else:
                    buf.append(d)
                    i += 1
        elif c == "$":
            value, i = _expand_param(line, i, env)
            buf.append(value)
            started = True
        elif c == "~" and not started and (i + 1 == n or line[i + 1] in "/ \t;&|"):
            buf.append(env.get("HOME", "~"))
            started = True
            i += 1
        elif c in "<>&|;" or (c in "12" and not started and line[i + 1 : i + 2] == ">"):
            op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
            if op is None:
                buf.append(c)
                started = True
                i += 1
                continue
            flush()
            words.append(_Word(op, False, operator=True))
            i += len(op)
        else:
            buf.append(c)
            started = True
            i += 1
    flush()
    return words


def parse(line: str, env: Mapping[str, str]) -> list[Command]:
    """Parse a command line into a list of simple commands (an empty list for blank input)."""
    words = tokenize(line, env)
    commands: list[Command] = []
    current = Command(";", [])
    connector = ";"
    pending_redirect: str | None = None
    for w in words:
        if pending_redirect is not None:
            if w.operator:
                raise ShellSyntaxError(w.text)
            _apply_redirect(current, pending_redirect, w.text)
            pending_redirect = None
            continue
        if w.operator and w.text in _LIST_OPS:
            if not current.argv and not current.assignments:
                raise ShellSyntaxError(w.text)
            commands.append(current)
            connector = ";" if w.text in (";", "&") else w.text
            current = Command(connector, [])
        elif w.operator and w.text == "|":
            if not current.argv:
                raise ShellSyntaxError("|")
            raise Unsupported("pipelines")
        elif w.operator and w.text in _NEEDS_TARGET:
            pending_redirect = w.text
        elif w.operator:
            _apply_redirect(current, w.text, "")
        elif not current.argv and not w.quoted and "=" in w.text and w.text[0] in _NAME_START:
            name, _, value = w.text.partition("=")
            if all(ch in _NAME_CHARS for ch in name):
                current.assignments.append((name, value))
            else:
                current.argv.append(w.text)
        else:
            current.argv.append(w.text)
    if pending_redirect is not None:
        raise ShellSyntaxError("newline")
    if current.argv or current.assignments:
        commands.append(current)
    elif connector in ("&&", "||"):
        raise Incomplete
    return commands


def split_list(line: str) -> list[tuple[str, str]]:
    """Cut a (syntactically valid) line into its simple commands without expanding anything:
    bash expands each command only when it runs, so ``false; echo $?`` prints 1."""
    parts: list[tuple[str, str]] = []
    connector = ";"
    start = 0
    i, n = 0, len(line)
    at_word_start = True
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            at_word_start = False
            continue
        if c in "'\"":
            end = i + 1
            while end < n and line[end] != c:
                end += 2 if (c == '"' and line[end] == "\\") else 1
            i = end + 1
            at_word_start = False
            continue
        if c == "#" and at_word_start:
            break
        op = None
        if line.startswith(("&&", "||"), i):
            op = line[i : i + 2]
        elif c == ";" or (c == "&" and line[i + 1 : i + 2] != ">" and line[i - 1 : i] not in (">", "<")):
            op = c
        if op is not None:
            parts.append((connector, line[start:i]))
            connector = ";" if op in (";", "&") else op
            i += len(op)
            start = i
            at_word_start = True
            continue
        at_word_start = c in " \t\n"
        i += 1
    parts.append((connector, line[start:i]))
    return [(conn, text) for conn, text in parts if text.strip()]


def _apply_redirect(cmd: Command, op: str, target: str) -> None:
    dest = "null"  # /dev/null or a file: either way the output leaves the terminal
    if op == "<":
        cmd.stdin_file = target
    elif op in (">", ">>", "1>", "1>>"):
        cmd.stdout = dest
    elif op in ("2>", "2>>"):
        cmd.stderr = dest
    elif op in ("&>", "&>>"):
        cmd.stdout = cmd.stderr = dest
    elif op == "2>&1":
        cmd.stderr = cmd.stdout
    elif op in ("1>&2", ">&2"):
        cmd.stdout = cmd.stderr
