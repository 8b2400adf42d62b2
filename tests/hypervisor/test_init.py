"""The init's command parser, run through the real binary in its non-PID-1 `--check` mode."""

from __future__ import annotations

import re
import subprocess

import pytest

from unicloud.image.init import ensure_init


def check(cmd: str, **env: str) -> list[str]:
    proc = subprocess.run([str(ensure_init()), "--check", cmd], capture_output=True,
                          env={"PATH": "/bin", **env}, check=False)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode())
    return proc.stdout.decode().split("\0")[:-1]


def test_build_is_reproducible(tmp_path, monkeypatch):
    first = ensure_init().read_bytes()
    monkeypatch.setenv("UNICLOUD_CACHE_DIR", str(tmp_path))
    second = ensure_init()
    assert second.read_bytes() == first
    assert len(first) < 200_000


def test_splits_quotes_and_expands_variables():
    assert check('gunicorn app:app --bind "[::]:$PORT" -w ${WORKERS:-2} \'$NOT\' "a b"',
                 PORT="8080") == ["gunicorn", "app:app", "--bind", "[::]:8080", "-w", "2", "$NOT", "a b"]
    assert check("run ${X} $X", X="one two") == ["run", "one two", "one two"]  # no word splitting
    assert check("run $UNSET end") == ["run", "end"]
    assert check("run \"$UNSET\" end") == ["run", "", "end"]
    assert check("FOO=1 exec web --x") == ["web", "--x"]


@pytest.mark.parametrize("cmd, named", [
    ("web | tee log", "'|'"), ("web > log", "'>'"), ("web; rm -rf /", "';'"),
    ("web && other", "'&&'"), ("web `id`", "'`'"), ("web $(id)", "'$('"),
    ("web &", "'&'"), ("web < in", "'<'"), ('web "$(id)"', "'$('"),
])
def test_refuses_shell_syntax_naming_it(cmd, named):
    with pytest.raises(ValueError, match="refusing command: shell syntax " + re.escape(named)):
        check(cmd)


def test_quoted_operators_are_literal():
    assert check("python -c 'print(1|2)'") == ["python", "-c", "print(1|2)"]


@pytest.mark.parametrize("cmd, message", [
    ("", "empty command"), ("web 'open", "unterminated '"), ("web ${X", "unterminated"),
    ("web ${X/y}", "unsupported expansion"),
])
def test_rejects_malformed_commands(cmd, message):
    with pytest.raises(ValueError, match=message):
        check(cmd)
