"""Scripted scenario files: commands in, expected output inline.

A file is a sequence of cases. Each case is a command line, optional input lines, a `----`
separator and the expected output, ended by a blank line:

    # comments and blank lines between cases are ignored
    write key=a value=1
    ----
    head: forward seq=1 to n2

A case whose output contains blank lines is written with a doubled separator and ends with
another doubled separator:

    status
    ----
    ----
    line one

    line three
    ----
    ----

The command line is split into a name, positional words and `key=value` arguments (a value
may be `a,b,c` for a list). `run_file` hands each case to a handler that returns the actual
output; a mismatch fails with both texts. With KEYCHAIN_REWRITE=1 in the environment the file is
rewritten with the actual outputs instead, which is how new scenarios get their first expectation
(read the result before committing it).

Written by hand: the format follows etcd's datadriven tests, and no maintained Python library
offers it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "----"


@dataclass
class Case:
    path: str
    line: int
    command: str
    args: dict[str, str] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    input: str = ""
    expected: str = ""

    def arg(self, name: str, default: str | None = None) -> str:
        if name in self.args:
            return self.args[name]
        if default is None:
            raise ScenarioError(f"{self.where}: {self.command} needs {name}=")
        return default

    def int_arg(self, name: str, default: int | None = None) -> int:
        raw = self.arg(name, None if default is None else str(default))
        return int(raw)

    def list_arg(self, name: str, default: list[str] | None = None) -> list[str]:
        if name not in self.args:
            if default is None:
                raise ScenarioError(f"{self.where}: {self.command} needs {name}=")
            return default
        raw = self.args[name]
        return [part for part in raw.split(",") if part]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class ScenarioError(Exception):
    """A scenario file is malformed or a command is used wrongly."""


def parse_command(text: str) -> tuple[str, list[str], dict[str, str]]:
    parts = shlex.split(text)
    if not parts:
        raise ScenarioError("empty command")
    words: list[str] = []
    args: dict[str, str] = {}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            args[key] = value
        else:
            words.append(part)
    return parts[0], words, args


def parse(text: str, path: str = "<scenario>") -> list[Case]:
    lines = text.split("\n")
    cases: list[Case] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        command, words, args = parse_command(line)
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i] != SEPARATOR:
            if not lines[i].strip():
                raise ScenarioError(f"{path}:{start + 1}: case has no {SEPARATOR} separator")
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ScenarioError(f"{path}:{start + 1}: case has no {SEPARATOR} separator")
        i += 1  # the separator
        out: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:  # doubled: output may hold blank lines
            i += 1
            while i < len(lines) and not (lines[i] == SEPARATOR and i + 1 < len(lines) and lines[i + 1] == SEPARATOR):
                out.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ScenarioError(f"{path}:{start + 1}: unterminated {SEPARATOR}/{SEPARATOR} block")
            i += 2
        else:
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
        cases.append(
            Case(
                path=path,
                line=start + 1,
                command=command,
                args=args,
                words=words,
                input="\n".join(body),
                expected="\n".join(out),
            )
        )
    return cases


def render(cases: list[Case], outputs: list[str]) -> str:
    chunks: list[str] = []
    for case, output in zip(cases, outputs, strict=True):
        header = [_command_line(case)]
        if case.input:
            header.append(case.input)
        output = output.rstrip("\n")
        if "\n\n" in output or output.startswith("\n"):
            chunks.append("\n".join([*header, SEPARATOR, SEPARATOR, output, SEPARATOR, SEPARATOR]))
        else:
            chunks.append("\n".join([*header, SEPARATOR, output]) if output else "\n".join([*header, SEPARATOR]))
    return "\n\n".join(chunks) + "\n"


def _command_line(case: Case) -> str:
    parts = [case.command, *case.words, *(f"{k}={v}" for k, v in case.args.items())]
    return " ".join(shlex.quote(p) if (" " in p or not p) else p for p in parts)


def run_file(path: str | Path, handler: Callable[[Case], str]) -> None:
    """Run every case of a scenario file through `handler`; assert (or rewrite) the outputs."""
    path = Path(path)
    text = path.read_text()
    cases = parse(text, str(path))
    rewrite = os.environ.get("KEYCHAIN_REWRITE") == "1"
    outputs: list[str] = []
    for case in cases:
        actual = handler(case).rstrip("\n")
        outputs.append(actual)
        if not rewrite and actual != case.expected.rstrip("\n"):
            raise AssertionError(
                f"{case.where}: {_command_line(case)}\n"
                f"--- expected\n{case.expected}\n--- actual\n{actual}\n"
                "(KEYCHAIN_REWRITE=1 rewrites the file with the actual outputs)"
            )
    if rewrite:
        # Comments are kept only before the first case; rewriting is for drafting new scenarios.
        preamble = []
        for line in text.split("\n"):
            if line.strip() and not line.lstrip().startswith("#"):
                break
            preamble.append(line)
        head = "\n".join(preamble).rstrip("\n")
        path.write_text((head + "\n\n" if head else "") + render(cases, outputs))
