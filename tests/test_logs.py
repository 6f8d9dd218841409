"""Where Ray's and the libraries' output goes (raysim.logs): staged while the command runs, then
in the logs/ of the outermost directory it recorded; left staged where that directory does not
exist at the end (bad input leaves no directory)."""

from __future__ import annotations

import os

import pytest

from raysim import logs
from raysim.runs.metadata import read_run_json, recording


@pytest.fixture
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYSIM_LOGS", str(tmp_path / "staging"))
    monkeypatch.delenv("RAYSIM_VERBOSE", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setattr(logs, "_log", logs._Log())
    return tmp_path / "staging"


def say(text: str) -> None:
    os.write(2, text.encode())   # as a native library or a child process writes: file descriptor 2


def test_the_log_moves_into_the_directory_and_run_json_names_it(tmp_path, staging, capsys):
    run_dir = tmp_path / "run"
    with logs.stderr_to_log():
        say("before the run\n")
        with recording(run_dir, "run"):
            run_dir.mkdir()
            say("during the run\n")
        say("after the run, session still open\n")
    kept = list((run_dir / logs.LOGS_DIR).glob("*.log"))
    assert len(kept) == 1
    assert kept[0].read_text() == "before the run\nduring the run\nafter the run, session still open\n"
    assert read_run_json(run_dir)["log"] == str(kept[0])
    assert not list(staging.glob("*.log"))   # moved, not copied
    logs.print_log_line()
    assert capsys.readouterr().out == f"Ray's and the libraries' logs: {kept[0]}\n"


def test_an_experiments_runs_name_the_experiments_log(tmp_path, staging):
    out = tmp_path / "exp"
    with logs.stderr_to_log(), recording(out, "experiment"):
        out.mkdir()
        with recording(out / "runs" / "pe", "run"):
            (out / "runs" / "pe").mkdir(parents=True)
            say("the run's noise\n")
    kept = list((out / logs.LOGS_DIR).glob("*.log"))
    assert len(kept) == 1 and kept[0].read_text() == "the run's noise\n"
    assert read_run_json(out / "runs" / "pe")["log"] == read_run_json(out)["log"] == str(kept[0])
    assert not (out / "runs" / "pe" / logs.LOGS_DIR).exists()


def test_a_directory_that_does_not_exist_at_the_end_leaves_the_log_staged(tmp_path, staging):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError), logs.stderr_to_log(), recording(run_dir, "run"):
        say("checked the input\n")
        raise ValueError("bad input")
    assert not run_dir.exists()
    [staged] = staging.glob("*.log")
    assert staged.read_text() == "checked the input\n" and logs.log_path() == staged


def test_each_directory_of_one_session_gets_its_own_log(tmp_path, staging):
    first, second = tmp_path / "a", tmp_path / "b"
    with logs.stderr_to_log():
        for directory in (first, second):
            with recording(directory, "run"):
                directory.mkdir()
                say(f"{directory.name}'s noise\n")
        say("the session's end\n")
    [a] = (first / logs.LOGS_DIR).glob("*.log")
    [b] = (second / logs.LOGS_DIR).glob("*.log")
    assert a.read_text() == "a's noise\n"
    assert b.read_text() == "b's noise\nthe session's end\n"


def test_verbose_leaves_the_terminal_alone(tmp_path, staging, monkeypatch, capsys):
    monkeypatch.setenv("RAYSIM_VERBOSE", "1")
    run_dir = tmp_path / "run"
    with logs.stderr_to_log(), recording(run_dir, "run"):
        run_dir.mkdir()
    assert not (run_dir / logs.LOGS_DIR).exists() and "log" not in read_run_json(run_dir)
    logs.print_log_line()
    assert capsys.readouterr().out == ""


def test_progress_bars_draw_on_the_terminal_while_stderr_is_the_log(tmp_path, staging):
    """A Ray session sends file descriptor 2 to the log; the bar still finds the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    from raysim.pipeline.progress import Progress

    screen, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a 100-column terminal
    saved = os.dup(2)
    os.dup2(tty, 2)
    try:
        with logs.stderr_to_log():
            say("ray's noise\n")
            progress = Progress(5, unit="resp", desc="respondents")
            progress.update(5)
            progress.close()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(tty)
    drawn = b""
    while select.select([screen], [], [], 0.5)[0]:   # (a pty hands its output over in pieces)
        try:
            drawn += os.read(screen, 65536)
        except OSError:   # EIO: all read, and the terminal's side is closed
            break
    os.close(screen)
    drawn = drawn.decode(errors="replace")
    assert progress._bar is not None and "5/5" in drawn and "ray's noise" not in drawn
    assert logs.log_path().read_text() == "ray's noise\n"


def test_a_session_inside_a_session_leaves_the_outer_one_writing_where_the_log_went(tmp_path, staging):
    run_dir = tmp_path / "run"
    with logs.stderr_to_log():
        with logs.stderr_to_log(), recording(run_dir, "run"):
            run_dir.mkdir()
            say("inner\n")
        say("outer, after the log moved\n")
    [kept] = (run_dir / logs.LOGS_DIR).glob("*.log")
    assert kept.read_text() == "inner\nouter, after the log moved\n"
