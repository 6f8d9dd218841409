"""Issue 17: what a careful user broke, each reproduced. Typed configs, one-line errors (exit 2 for
bad input, 1 for a fault), no run directory left by a config that fails, locked run directories,
`raysim repair`, stale temporaries, zero weights, bounds of searches and sizes, the embedded
model's cache checked by the hash of its weights, hub revisions."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline_helpers import ROOT, check_rows, env, write_config
from raysim.atomic import remove_stale, staging_dir, temporary_sibling
from raysim.cli import main
from raysim.engine import loading
from raysim.engine.loading import EMBEDDED_WEIGHTS_SHA256, ModelSpec, embedded_default_dir, weights_sha256
from raysim.pipeline.config import ConfigError, load_config, parse_config
from raysim.pipeline.simulate import check, sample
from raysim.runs.lock import run_lock
from raysim.runs.results import result_rows, write_results_shard
from raysim.runs.rundir import config_hash, init_run_dir, load_run_config, results_dir
from raysim.survey.population import ID, WEIGHT, read_population
from raysim.survey.synthetic import write_synthetic
from raysim.tune.space import SpaceError, parse_space


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("raysim: error: "), err
    return lines[0]


CARDATA = {"population": {"cardata": True}, "sampling": {"per_country": 1, "countries": ["USA"]},
           "questions": 1, "method": "pe"}


def config_file(tmp_path: Path, name: str = "c.yaml", **overrides) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**CARDATA, **overrides}))
    return path


# ---- 1. typed configs ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, says", [
    ({"model": {"trust_remote_code": "no"}}, "model: trust_remote_code: expected bool, got 'no'"),
    ({"sampling": {"seed": "abc"}}, "sampling: seed: expected int, got 'abc'"),
    ({"sampling": {"countries": "DEU"}}, "sampling: countries: expected tuple[str, ...], got 'DEU'"),
    ({"questions": 2.5}, "questions: expected int | tuple[str, ...], got 2.5"),
    ({"questions": "24"}, "questions: expected int | tuple[str, ...], got '24'"),
    ({"actors": {"batch_size": True}}, "actors: batch_size: expected int, got True"),
    ({"sampling": {"per_country": 0}}, "sampling.per_country must be positive"),
])
def test_config_values_are_checked_for_their_type_naming_file_and_key(tmp_path, overrides, says):
    path = config_file(tmp_path, **overrides)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value)


def test_method_parameters_are_typed_too(tmp_path):
    method = tmp_path / "hot.yaml"
    method.write_text("name: hot\nkind: prompt\nsystem: direct\nlogprob: {temperature: hot}\n")
    with pytest.raises(ConfigError, match=r"hot\.yaml.*logprob.*temperature: expected float, got 'hot'"):
        parse_config({**CARDATA, "method": str(method)})


def test_an_integer_is_a_float_and_the_value_given_is_kept():
    config = parse_config({**CARDATA, "actors": {"num_cpus": 1}})
    assert config.actors.num_cpus == 1 and type(config.actors.num_cpus) is int   # the hash sees what the file says


# ---- 2. one line, exit 2, nothing written -------------------------------------------------------

def preset_beyond_the_model(tmp_path: Path) -> Path:
    preset = yaml.safe_load((ROOT / "configs" / "models" / "smollm2-135m.yaml").read_text())
    preset["psii"]["layers"]["high"] = 99   # the model has 30 layers
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


@pytest.mark.parametrize("case", ["seed", "country", "model_path", "preset_layer", "syntax", "python_tag",
                                  "zero_weights"])
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_directory(tmp_path, capsys, case):
    says = {"seed": "seed: expected int", "country": "sampling.countries ['XYZ'] have no respondents",
            "model_path": "model: model path '/nonexistent/model' does not exist",
            "preset_layer": "injects {'Q260': 99",
            "syntax": "not valid YAML at line 2", "python_tag": "could not determine a constructor",
            "zero_weights": "weights sum to zero"}[case]
    if case == "seed":
        path = config_file(tmp_path, sampling={"seed": "abc"})
    elif case == "country":   # found only once the population is written into the run directory
        path = config_file(tmp_path, sampling={"per_country": 1, "countries": ["XYZ"]}, method="uniform")
    elif case == "model_path":
        path = config_file(tmp_path, model={"name_or_path": "/nonexistent/model"})
    elif case == "preset_layer":
        path = config_file(tmp_path, method="psii", preset=str(preset_beyond_the_model(tmp_path)))
    elif case == "zero_weights":
        pop = tmp_path / "pop"
        write_synthetic(60, pop, seed=0)
        for shard in pop.glob("*.parquet"):
            table = pq.read_table(shard)
            pq.write_table(table.set_column(table.schema.get_field_index(WEIGHT), WEIGHT,
                                            [np.zeros(table.num_rows)]), shard)
        path = config_file(tmp_path, population={"path": str(pop)}, sampling={"per_country": 2}, method="uniform")
    else:
        path = tmp_path / "c.yaml"
        path.write_text("population: {cardata: true\nmethod: pe\n" if case == "syntax"
                        else "population: !!python/object:os.system {}\nmethod: pe\n")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "simulate", "--config", path, "-o", out)
    assert code == 2 and says in one_error_line(err)
    assert not out.exists()


def test_verbose_shows_the_traceback(tmp_path, capsys):
    code, _, err = cli(capsys, "simulate", "--config", config_file(tmp_path, questions=2.5), "-o", tmp_path / "r",
                       "--verbose")
    assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("raysim: error: ")


def test_an_existing_run_directory_keeps_its_content_when_a_config_fails(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    code, _, _ = cli(capsys, "simulate", "--config", config_file(tmp_path, model={"name_or_path": "/nope/x"}),
                     "-o", run_dir)
    assert code == 2 and (run_dir / "notes.txt").read_text() == "mine"


# ---- 3. run directories that defend themselves -------------------------------------------------

def test_a_run_into_a_locked_directory_is_refused_and_touches_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    planted = results_dir(run_dir) / ".part-x.parquet.tmp-otherhost-1-0123abcd"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"a shard being written by the holder")
    with run_lock(run_dir):
        code, _, err = cli(capsys, "simulate", "--config", write_config(tmp_path / "c.yaml"), "-o", run_dir)
    line = one_error_line(err)
    assert code == 2 and f"is in use by host {socket.gethostname()} pid {os.getpid()}" in line
    assert planted.exists() and not (run_dir / "config.yaml").exists()


@pytest.mark.timeout(300)
def test_two_runs_at_once_the_second_is_refused_the_first_completes(tmp_path):
    """The issue's case: two `raysim simulate` into one directory. The first holds the lock for
    its whole pass; the second exits 2 naming it; the directory ends with no duplicate."""
    config = write_config(tmp_path / "c.yaml", actors={"number": 1, "num_cpus": 0.5, "batch_size": 2})
    run_dir = tmp_path / "run"
    raysim = [sys.executable, "-m", "raysim.cli", "simulate", "--config", str(config), "-o", str(run_dir)]
    first = subprocess.Popen(raysim, cwd=ROOT, env={**env(), "RAYSIM_LOGS": str(tmp_path / "logs")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run([*raysim, "--limit", "3"], cwd=ROOT, env=env(), capture_output=True, text=True,
                            timeout=120)
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2 and f"pid {first.pid}" in one_error_line(second.stderr)
    check_rows(run_dir, respondents=9, questions=5)
    # Ray's output went to the log the run directory keeps, named on the terminal, not to the terminal
    [log] = (run_dir / "logs").glob("*.log")
    assert f"Ray's and the libraries' logs: {log}" in out.splitlines() and log.stat().st_size > 0
    assert not list((tmp_path / "logs").glob("*.log")) and "ray" not in err.lower()


def damaged_run(tmp_path: Path) -> tuple[Path, list[int]]:
    """A complete uniform run written by hand (no Ray), then damaged as concurrent writers and
    killed copies damage one: a shard copied under another name, a respondent's shard that lacks
    a question, an unreadable shard, a dead writer's temporary file."""
    config = parse_config(yaml.safe_load(write_config(tmp_path / "c.yaml").read_text()))
    run_dir = tmp_path / "run"
    population = config.population.ensure(run_dir)
    resolved = config.resolved(run_dir)
    h = init_run_dir(run_dir, resolved)
    qids = resolved["questions"]
    chosen = sample(population, config)[ID]
    people = read_population(population)
    people = people[people[ID].isin(chosen)].sort_values(["country", ID]).reset_index(drop=True)
    from raysim.survey.codebook import load_codebook

    cb = load_codebook(resolved["codebook"])
    shards = []
    for i in range(0, len(people), 2):
        batch = people.iloc[i:i + 2]
        codes = [[c for c, _ in cb[q].options] for _ in range(len(batch)) for q in qids]
        rows = result_rows(batch, qids, run_id="run", method="uniform", config_hash=h, option_codes=codes,
                           probs=[[1 / len(c)] * len(c) for c in codes])
        shards.append(write_results_shard(rows, results_dir(run_dir), f"part-{i:03d}"))
    time.sleep(0.01)
    shutil.copy(shards[0], results_dir(run_dir) / "part-copy.parquet")          # duplicates, newer
    partial = pq.read_table(shards[1]).slice(0, len(qids) - 1)                  # a question short
    pq.write_table(partial, results_dir(run_dir) / "part-partial.parquet")
    (results_dir(run_dir) / "part-broken.parquet").write_bytes(b"PAR1 not really")
    (results_dir(run_dir) / ".part-9.parquet.tmp-h-1-0123abcd").write_bytes(b"")
    return run_dir, people[ID].tolist()


def test_repair_keeps_the_newest_complete_answers_and_removes_the_rest(tmp_path, capsys):
    run_dir, ids = damaged_run(tmp_path)
    n_q = len(load_run_config(run_dir)["questions"])
    (results_dir(run_dir) / "part-broken.parquet").unlink()   # (the completeness check cannot read it)
    before = check(run_dir, pd.Series(ids), n_q)
    assert before.duplicates > 0 and not before.ok
    (results_dir(run_dir) / "part-broken.parquet").write_bytes(b"PAR1 not really")

    code, out, _ = cli(capsys, "repair", run_dir)
    assert code == 0
    assert f"duplicate rows removed: {2 * n_q}" in out            # part-000's two respondents, kept in the copy
    assert f"rows of incomplete answer sets removed: {n_q - 1}" in out
    assert "unreadable shards removed: 1 (part-broken.parquet)" in out
    assert "temporary files of dead writers removed: 1" in out
    after = check(run_dir, pd.Series(ids), n_q)
    assert after.duplicates == 0 and after.ok and after.complete == len(ids)
    assert not (results_dir(run_dir) / "part-000.parquet").exists()     # emptied: the copy is newer
    code, out, _ = cli(capsys, "repair", run_dir)
    assert code == 0 and "nothing to repair" in out


def test_repair_then_a_rerun_completes_the_run(tmp_path, capsys):
    run_dir, ids = damaged_run(tmp_path)
    shard = pq.read_table(results_dir(run_dir) / "part-002.parquet")   # a respondent the run then lacks
    pq.write_table(shard.slice(0, 0), results_dir(run_dir) / "part-002.parquet")
    assert cli(capsys, "repair", run_dir)[0] == 0
    n_q = len(load_run_config(run_dir)["questions"])
    assert check(run_dir, pd.Series(ids), n_q).complete == len(ids) - 2
    code, out, err = cli(capsys, "simulate", "--config", tmp_path / "c.yaml", "-o", run_dir)
    assert code == 0, err
    assert f"{len(ids) - 2} already complete, 2 to do" in out
    check_rows(run_dir, respondents=len(ids), questions=n_q)


def test_stale_temporaries_of_dead_writers_are_removed_by_the_next_writer(tmp_path):
    target = tmp_path / "population"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    mine = temporary_sibling(target)                                    # a live writer: this process
    stale = tmp_path / f".population.tmp-{host}-{dead.pid}-0123abcd"     # a writer that died
    foreign_old = tmp_path / ".population.tmp-elsewhere-7-89abcdef"      # another host, long ago
    foreign_new = tmp_path / ".population.tmp-elsewhere-8-fedcba98"      # another host, now
    legacy = tmp_path / ".population.tmp-0a1b2c3d"                       # named before writers were
    for d in (mine, stale, foreign_old, foreign_new, legacy):
        d.mkdir()
        (d / "part-00000.parquet").write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    for d in (foreign_old, legacy):
        os.utime(d, (day_ago, day_ago))
    staging = staging_dir(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, foreign_new.name, staging.name])
    assert remove_stale(target) == []


# ---- 4. ids and weights ----------------------------------------------------------------------
# (ids outside int64 are an error naming the row: tests/test_import_survey.py
#  test_an_empty_or_huge_id_is_a_one_line_error)

def test_a_group_whose_weights_sum_to_zero_is_left_out_with_a_note_never_an_empty_table(tmp_path):
    from raysim.metrics.scores import ScoreError, score
    from raysim.survey.codebook import load_codebook

    run_dir, ids = damaged_run(tmp_path)
    (results_dir(run_dir) / "part-broken.parquet").unlink()
    cli_code = main(["repair", str(run_dir)])
    assert cli_code == 0
    population = read_population(run_dir / "population")
    results = pq.read_table(results_dir(run_dir))
    cb = load_codebook(load_run_config(run_dir)["codebook"])
    population.loc[population["country"] == "JPN", WEIGHT] = 0.0
    scores = score(results, population, cb, n_boot=5)
    assert "JPN" in scores.weightless and set(scores.table["country"]) == {"DEU", "USA", "ALL"}
    population[WEIGHT] = 0.0
    with pytest.raises(ScoreError, match="weights of every group's respondents sum to zero"):
        score(results, population, cb, n_boot=5)


# ---- smaller: bounds of searches and sizes, output names ----------------------------------------

@pytest.mark.parametrize("space, says", [
    ({"sigma": [-1, 1]}, "space.sigma: must be >= 0"),
    ({"sigma": ["a", 1]}, "space.sigma: bounds are numbers"),
    ({"sigma": {"low": 0.1, "high": 1, "log": "yes"}}, "log is true or false"),
    ({"layers": {"per": "group", "range": [2.5, 9]}}, "bounds are integers"),
])
def test_search_spaces_refuse_negative_or_mistyped_bounds(space, says):
    with pytest.raises(SpaceError, match=says):
        parse_space(space, 30, ("en", "es"))


def test_synth_of_no_one_and_import_into_a_file_name_are_errors(tmp_path, capsys):
    code, _, err = cli(capsys, "data", "synth", "--n", "0", "-o", tmp_path / "none")
    assert code == 2 and "positive integer, got 0" in one_error_line(err) and not (tmp_path / "none").exists()
    from raysim.survey.official_layout import to_official_frame, write_official

    write_synthetic(40, tmp_path / "pop", seed=0)
    csv = write_official(to_official_frame(read_population(tmp_path / "pop")), tmp_path / "wvs.csv")
    code, _, err = cli(capsys, "data", "import", csv, "-o", tmp_path / "x.parquet")
    assert code == 2 and "a population is a directory" in one_error_line(err)
    assert not (tmp_path / "x.parquet").exists()


# ---- 5. models: the embedded cache verified, hub revisions -------------------------------------

def test_a_cached_embedded_model_with_other_weights_is_refused(tmp_path):
    real = embedded_default_dir()
    assert weights_sha256(real) == EMBEDDED_WEIGHTS_SHA256
    fake = tmp_path / real.name
    fake.mkdir()
    for f in real.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, fake / f.name)
    from safetensors.numpy import save_file

    save_file({"model.embed_tokens.weight": np.zeros((4, 4), np.float32)}, fake / "model.safetensors")
    with pytest.raises(ValueError, match="does not hold the embedded default's weights.*remove the directory"):
        embedded_default_dir(tmp_path)


def test_a_hub_revision_is_recorded_and_absent_when_not_given():
    assert "revision" not in ModelSpec().to_dict()          # older runs keep their hash
    assert ModelSpec("org/model", revision="a1b2c3").to_dict()["revision"] == "a1b2c3"
    with pytest.raises(ValueError, match="revision only applies to hub models"):
        ModelSpec("embedded", revision="main")
    config = parse_config({**CARDATA, "method": "uniform", "model": {"name_or_path": "org/m", "revision": "v1"}})
    assert config.model.revision == "v1"


# ---- 2'. a fault: one line with its first cause and the log ------------------------------------

@pytest.mark.timeout(300)
def test_an_actor_that_dies_is_one_line_exit_1_with_its_cause_and_log(tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    for f in embedded_default_dir().iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, broken / f.name)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    config = config_file(tmp_path, model={"name_or_path": str(broken)},
                         actors={"number": 1, "num_cpus": 0.5, "batch_size": 1})
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "raysim.cli", "simulate", "--config", str(config),
                           "-o", str(tmp_path / "run")], cwd=ROOT, env={**env(), "RAYSIM_LOGS": str(logs)},
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    log = Path(line.rsplit("(traceback and logs: ", 1)[1].rstrip(")"))
    assert log.parent == logs and "Traceback" in log.read_text() and "Ray's logs of this session" in log.read_text()
    assert "Error" in line.split("(traceback")[0]
    assert not (tmp_path / "run").exists()   # nothing was simulated: the new directory is removed


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `raysim methods | head -1`: the reader leaves; no traceback
    done = subprocess.run(f"{sys.executable} -m raysim.cli methods | head -1", shell=True, cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr


def test_codebook_fields_of_the_wrong_type_are_one_line_errors():
    from raysim.survey.codebook import CodebookError, parse_codebook

    item = {"id": "Q1", "text": "How?", "options": [[1, "Yes"], [2, "No"]], "kind": "ordinal"}
    for bad, says in (({"scale": [1, "2"]}, "scale"), ({"opinion": "no"}, "'opinion' must be true or false"),
                      ({"options": [[1.5, "a"], [2, "b"]]}, "is not [integer code, text label]"),
                      ({"kind": "numeric", "range": [0, "10"]}, "range: [min, max] (integers)")):
        with pytest.raises(CodebookError, match=re.escape(says)):
            parse_codebook({"items": [{**item, **bad}]}, "t", "h")


def test_questions_may_be_listed_by_id_and_unknown_ids_are_refused():
    from raysim.survey.codebook import load_codebook

    config = parse_config({**CARDATA, "method": "uniform", "questions": ["Q164", "Q46"]})
    assert config.question_ids(load_codebook("wvs7")) == ["Q164", "Q46"]
    with pytest.raises(ConfigError, match="unknown question id 'Q9999'"):
        config.__class__.question_ids(parse_config({**CARDATA, "questions": ["Q9999"]}), load_codebook("wvs7"))
    with pytest.raises(ConfigError, match="a list of distinct question ids"):
        parse_config({**CARDATA, "questions": ["Q1", "Q1"]})
