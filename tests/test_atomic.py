"""The one atomic writer: all or nothing, fsynced, and the only place raysim renames files."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from raysim import atomic
from raysim.atomic import publish_dir, staging_dir, write_atomic, write_text_atomic

PACKAGE = Path(atomic.__file__).parent


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "a.txt", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_file_and_directory_are_fsynced_before_the_call_returns(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    write_text_atomic(tmp_path / "a.txt", "new")
    assert synced[-1] == str(tmp_path) and synced[0].startswith(str(tmp_path / ".a.txt.tmp-"))


def test_publish_dir_replaces_whole_or_leaves_an_existing_one(tmp_path):
    target = tmp_path / "lib"
    first = staging_dir(target)
    (first / "x").write_text("1")
    assert publish_dir(first, target) and (target / "x").read_text() == "1"
    second = staging_dir(target)
    (second / "y").write_text("2")
    assert publish_dir(second, target)
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    third = staging_dir(target)
    (third / "z").write_text("3")
    assert publish_dir(third, target, replace=False) is False   # the existing one wins
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]   # nothing staged is left


def test_only_the_atomic_module_renames_files():
    """Every writer goes through raysim.atomic: no other module renames or replaces a path."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "atomic.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("replace", "rename") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
