"""The `raysim` command-line contract (issue 2) end to end, in-process."""

import json
import re

import pandas as pd
import pytest

from pipeline_helpers import ROOT
from raysim.cli import main
from raysim.survey.codebook import load_codebook
from raysim.survey.official_layout import to_official_frame, write_official
from raysim.survey.population import read_population


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_codebook_show_and_list(capsys):
    code, out, _ = run(capsys, "codebook", "show", "Q57")
    assert code == 0 and "Q57" in out and "Most people can be trusted" in out
    code, out, _ = run(capsys, "codebook", "list", "--json")
    items = json.loads(out)
    assert {f"Q{n}" for n in range(1, 291)} <= {i["id"] for i in items}
    q56 = next(i for i in items if i["id"] == "Q56")
    assert list(q56["options"]) == ["1", "2", "3"] and q56["scale"] == [1, 3, 2]
    assert {"id", "text", "options", "kind", "section", "category"} <= set(q56)


def test_unknown_question_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "codebook", "show", "Q999")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "unknown question id 'Q999'" in err


def test_synth_describe_profiles(tmp_path, capsys):
    pop = tmp_path / "pop"
    assert run(capsys, "data", "synth", "--n", "300", "--seed", "3", "-o", str(pop))[0] == 0
    code, out, _ = run(capsys, "data", "describe", str(pop))
    assert code == 0 and "respondents: 300" in out
    n_countries = read_population(pop, columns=["country"])["country"].nunique()
    assert f"countries: {n_countries}" in out.splitlines()
    code, out, _ = run(capsys, "data", "profiles", str(pop), "--n", "2")
    assert code == 0 and out.count("You are") >= 2
    # an existing population is not replaced without --overwrite
    code, _, err = run(capsys, "data", "synth", "--n", "10", "-o", str(pop))
    assert code == 2 and "exists" in err
    assert len(read_population(pop)) == 300


def test_import_official_csv_and_reject_foreign_file(tmp_path, capsys):
    cb = load_codebook("wvs7")
    pop = tmp_path / "pop"
    main(["data", "synth", "--n", "120", "--seed", "1", "-o", str(pop)])
    capsys.readouterr()
    original = read_population(pop)
    csv = write_official(to_official_frame(original, cb), tmp_path / "WVS_Cross-National_Wave_7_csv.csv")
    code, out, _ = run(capsys, "data", "import", str(csv), "-o", str(tmp_path / "imported"))
    assert code == 0 and "imported 120 respondents" in out
    imported = read_population(tmp_path / "imported")
    assert imported["source_id"].tolist() == original["respondent_id"].tolist()   # D_INTERVIEW, kept
    pd.testing.assert_frame_equal(imported.drop(columns="source_id"), original)

    foreign = tmp_path / "iris.csv"
    foreign.write_text("sepal_length,sepal_width,species\n5.1,3.5,setosa\n")
    code, _, err = run(capsys, "data", "import", str(foreign), "-o", str(tmp_path / "x"))
    assert code == 2 and err.count("\n") == 1 and "D_INTERVIEW" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.timeout(900)   # the demo runs on a local Ray instance
def test_demo_writes_scored_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--n", "300", "--boot", "5", "--per-country", "2", "--questions", "4"]
    code, printed, _ = run(capsys, *argv)
    assert code == 0
    for run_dir in (out / "synthetic-300-pe", out / "cardata-pe"):
        scores = pd.read_csv(run_dir / "scores.csv")
        assert {"country", "category", "metric", "value", "floor"} <= set(scores.columns)
        assert (scores["method"] == "pe (SmolLM2-135M-Instruct)").all()
        kl = scores[(scores.metric == "kl") & (scores.category == "Overall")]
        assert (kl["value"] > 0).all() and "ALL" in set(kl["country"])
        assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    results = pd.read_parquet(out / "synthetic-300-pe" / "results")
    assert len(results) == 4 * 2 * 4 and results["probs"].map(lambda p: abs(sum(p) - 1) < 1e-4).all()
    cardata = pd.read_csv(out / "cardata-pe" / "scores.csv")
    assert set(cardata["country"]) == {"AUS", "NOR", "SWE", "USA", "ALL"}
    # it ends with each run's headline beside its yardsticks, in words, and the report's path
    tail = printed.strip().splitlines()[-8:]
    assert tail[0].startswith("synthetic-300, PE on SmolLM2-135M-Instruct, logprob mode, 8 respondents × 4 questions")
    assert re.fullmatch(r"  KL [0-9.]+, [0-9.]+× (worse|better) than answering uniformly \([0-9.]+\); "
                        r"[0-9.]+× the human noise floor \([0-9.]+\)", tail[1]), tail[1]
    for k, name in ((2, "synthetic-300-pe"), (6, "cardata-pe")):
        # each run's log, with Ray's output, in the run directory; then the report's path
        [log] = (out / name / "logs").glob("*.log")
        assert tail[k] == f"  Ray's and the libraries' logs: {log}"
        assert tail[k + 1] == f"  report: {out / name / 'report.html'}"
    assert "ray" in next((out / "synthetic-300-pe" / "logs").glob("*.log")).read_text().lower()   # (it started Ray)
    # rescoring a run directory reproduces its scores (seeded bootstrap)
    before = pd.read_csv(out / "cardata-pe" / "scores.csv")
    assert run(capsys, "score", str(out / "cardata-pe"), "--boot", "5")[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "cardata-pe" / "scores.csv"), before)


def test_identity_show_lists_the_packaged_library(capsys):
    assert main(["identity", "show", "--layers", "15", "24"]) == 0
    out = capsys.readouterr().out
    assert "13 attributes" in out and "SmolLM2-135M-Instruct" in out
    for qid in ("Q260", "Q263", "Q271", "Q273", "Q275", "Q279", "Q281", "Q284", "Q285", "Q286", "Q287",
                "Q288", "Q289"):
        assert qid in out
    assert "language vectors: ar" in out


def test_forwarded_identity_commands_have_their_own_help_and_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["identity", "calibrate", "--help"])
    assert exit_.value.code == 0 and "usage: raysim identity calibrate" in capsys.readouterr().out
    assert main(["identity", "collapse", "--library", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "is not a vector library" in capsys.readouterr().err


def test_methods_lists_the_registry(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"direct", "high_temp", "multilingual", "divreq", "pe", "simvbg", "psii", "psii_no_noise"} <= set(names)
    assert {"prompt", "simvbg", "uniform"} <= set(names[names.index("kinds:") + 1:])


def test_experiment_input_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "experiment", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "x"))
    assert code == 2 and "no such experiment config" in err and "Traceback" not in err
    code, _, err = run(capsys, "experiment", str(ROOT / "configs/experiments/paper_table1.yaml"), "--population",
                       "synthetic:many", "-o", str(tmp_path / "x"))
    assert code == 2 and "expected synthetic:N" in err
    assert not (tmp_path / "x").exists()   # refused before anything was written


def test_version_is_the_installed_packages(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"raysim {version('raysim')}"


def test_every_subcommand_has_a_purpose_its_defaults_and_an_example(capsys):
    from raysim.cli import _leaves, build_parser

    paths = [path for path, _, _ in _leaves(build_parser())]
    assert ("report",) in paths and ("identity", "calibrate") in paths and ("tune",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0, path
        purpose = out.split("\n\n")[1].strip()
        assert len(purpose) > 10 and not purpose.startswith(("positional", "options")), (path, purpose)
        assert f"example:\n  raysim {' '.join(path)}" in out, path
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "bootstrap replicates (default: 200)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    assert "default: 20000" in capsys.readouterr().out     # an option without help text shows its default too
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("raysim 0.")
