"""`raysim report`: one self-contained HTML page, opened in a real headless Chromium (Debian's
`chromium`, driven by Playwright's Python package); and the run.json every run records.

The browser is required: `make test` installs it, and a machine without one fails here with a
line saying how to install it (no skip)."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysim.cli import main
from raysim.runs.metadata import RUN_FILE, read_run_json, recording
from raysim.runs.results import write_results_shard
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook
from raysim.survey.population import write_population
from survey_helpers import uniform_results

ARTEFACTS = Path(os.environ.get("RAYSIM_TEST_ARTEFACTS", Path(__file__).resolve().parents[1] / "test-artefacts"))


def chromium() -> str:
    path = os.environ.get("RAYSIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no Chromium for the browser tests: install Debian's chromium (apt-get install chromium; "
                    "make test does) or point RAYSIM_CHROMIUM at a Chromium binary")
    return path


def make_run(root: Path, name: str, method: str, seed: int, people: pd.DataFrame) -> Path:
    """A run directory of real carData respondents whose answers a seeded random simulator gave
    (no model), as the pipeline lays it out, with its run.json."""
    cb = load_codebook("cardata")
    population = root / "population"
    if not population.exists():
        write_population(people, population, cb)
    run_dir = root / name
    (run_dir / "results").mkdir(parents=True)
    # the opinion item and the attributes a quality-check run asks (every item with options)
    qids = ["POVERTY", "DEGREE", "RELIGION", "Q260"]
    (run_dir / "config.yaml").write_text(f"codebook: cardata\npopulation: {population}\nanswer: logprob\n"
                                         f"method: {method}\nseed: {seed}\nmodel: {{name_or_path: embedded}}\n"
                                         f"questions: [{', '.join(qids)}]\n")
    with recording(run_dir, "run") as facts:
        rows = uniform_results(people, cb, qids, run_id=name,
                               config_hash="h" + name)
        rng = np.random.default_rng(seed)
        rows["method"] = method
        rows["probs"] = [list(rng.dirichlet(np.full(len(p), 0.7))) for p in rows["probs"]]
        write_results_shard(rows, run_dir / "results", "part-0")
        facts["rows"] = len(rows)
    return run_dir


@pytest.fixture(scope="module")
def people():
    return load_cardata().groupby("country").head(40).reset_index(drop=True)


def open_page(path: Path):
    """(playwright, browser, page, problems): problems collects console errors and page errors."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: problems.append(f"network request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return pw, browser, page, problems


def displayed_scores(page) -> pd.DataFrame:
    return pd.DataFrame(page.eval_on_selector_all("#scores tbody tr", """rows => rows.map(r => ({
        method: r.cells[0].textContent, group: r.cells[1].textContent, category: r.cells[2].textContent,
        metric: r.cells[3].textContent, value: parseFloat(r.cells[4].dataset.value)}))"""))


def test_run_report_in_a_browser(tmp_path, people, capsys):
    run_dir = make_run(tmp_path, "run", "noisy", 3, people)
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "-o", str(out), "--boot", "20"]) == 0   # scores the run first
    assert capsys.readouterr().out.strip() == f"wrote {out}: open it in a browser"
    html = out.read_text()
    assert "http://" not in html and "https://" not in html      # nothing to fetch
    scores = pd.read_csv(run_dir / "scores.csv")
    baseline = pd.read_csv(run_dir / "baseline.csv")

    pw, browser, page, problems = open_page(out)
    try:
        images = page.eval_on_selector_all("img", "xs => xs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(images) >= 4 + 2      # the four scored items' distributions and two headline charts
        assert all(done and w > 0 and h > 0 for done, w, h in images), images

        # every comparison row of scores.csv and of the yardstick, with its exact value
        shown = displayed_scores(page).set_index(["method", "group", "category", "metric"])["value"]
        want = pd.concat([scores, baseline])
        want = want[want.metric.isin(["kl", "js", "w1", "mae", "ed"])]
        want = want.set_index(["method", "country", "category", "metric"])["value"]
        assert len(shown) == len(want) and shown.index.is_unique
        assert "answering uniformly" in set(shown.index.get_level_values(0))
        np.testing.assert_array_equal(shown.loc[want.index].to_numpy(), want.to_numpy())

        # a click on a heading sorts by it (ascending, then descending)
        page.click("#scores th:nth-child(5)")
        values = displayed_scores(page)["value"].to_numpy()
        assert (np.diff(values) >= 0).all() and values[0] < values[-1]
        page.click("#scores th:nth-child(5)")
        assert (np.diff(displayed_scores(page)["value"].to_numpy()) <= 0).all()

        # the search filters the questions by id or text
        visible = lambda: page.eval_on_selector_all(   # noqa: E731
            "figure.question", "fs => fs.filter(f => f.style.display !== 'none').map(f => f.dataset.search)")
        assert len(visible()) == 4
        page.fill("#question-search", "poverty")
        assert [s.split()[0] for s in visible()] == ["poverty"]
        assert page.inner_text("#question-count") == "1 questions"
        page.fill("#question-search", "religion member")
        assert [s.split()[0] for s in visible()] == ["religion"]
        page.fill("#question-search", "no such question")
        assert visible() == []
        page.fill("#question-search", "")
        assert len(visible()) == 4

        # the run's metadata: commit or version, command, rows/s
        about = page.inner_text("#about-this-report")
        assert "raysim" in about and str(read_run_json(run_dir)["rows"]) in about
        assert "4 questions" in about and "None" not in about   # (an empty cell stays empty)
        headline = page.inner_text("#headline")
        assert re.search(r"noisy: KL [0-9.]+, [0-9.]+× (worse than|better than) answering uniformly", headline)
        assert "human noise floor" in headline
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "report.png"), full_page=True)
        assert problems == []
    finally:
        browser.close()
        pw.stop()
    assert (ARTEFACTS / "report.png").stat().st_size > 10_000


def test_experiment_report_compares_methods(tmp_path, people):
    from raysim.report.scorecard import score_run

    runs = [make_run(tmp_path / "exp" / "runs", name, name, seed, people) for name, seed in (("a", 1), ("b", 2))]
    cards = [score_run(r, n_boot=10) for r in runs]
    pd.concat([c.scores.table for c in cards]).to_csv(tmp_path / "exp" / "scores.csv", index=False)
    cards[0].scores.baseline.to_csv(tmp_path / "exp" / "baseline.csv", index=False)
    out = tmp_path / "exp.html"
    assert main(["report", str(tmp_path / "exp"), "-o", str(out)]) == 0
    pw, browser, page, problems = open_page(out)
    try:
        assert set(displayed_scores(page)["method"]) == {"a", "b", "answering uniformly"}
        headline = page.inner_text("#headline")
        assert "a: KL" in headline and "b: KL" in headline
        # one figure per question, each with both methods beside the humans
        assert len(page.query_selector_all("figure.question")) == 4
        assert problems == []
    finally:
        browser.close()
        pw.stop()


def test_report_of_something_else_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a run, experiment, Tune search or fit directory" in err
    assert not (tmp_path / "r.html").exists()


def test_run_json_records_each_invocation(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    with recording(directory, "run") as facts:
        facts.update(rows=100, method="pe")
    first = read_run_json(directory)
    assert first["status"] == "finished" and first["rows"] == 100 and first["method"] == "pe"
    assert first["rows_per_s"] > 0 and first["raysim"] and "torch" in first["packages"]
    assert first["started"] <= first["ended"] and "history" not in first
    with pytest.raises(RuntimeError):
        with recording(directory, "run"):
            raise RuntimeError("boom")
    second = read_run_json(directory)
    assert second["status"] == "failed" and "rows" not in second
    assert second["history"] == [first]      # the earlier invocation kept, newest first
    (directory / RUN_FILE).write_text("{not json")   # a damaged record describes nothing, stops nothing
    assert read_run_json(directory) is None
    with recording(directory, "run"):
        pass
    assert json.loads((directory / RUN_FILE).read_text())["status"] == "finished"
    with recording(tmp_path / "never-made", "run"):   # a directory the block did not create: nothing written
        pass
    assert not (tmp_path / "never-made").exists()


def test_search_and_fit_reports_show_their_trials_history_and_figures(tmp_path):
    """A real Tune search's files (docs/results/tune-cardata) with the cultural map and a collapse
    figure beside them, and a real mixture fit (docs/results/mixture-cardata)."""
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    search = tmp_path / "search"
    shutil.copytree(results / "tune-cardata", search)
    (search / "tune_config.yaml").write_text("digest: x\nconfig: {}\n")
    shutil.copy(results / "value-personas-synthetic" / "map" / "map.png", search / "map.png")
    shutil.copy(results / "collapse-smollm2" / "collapse_grid.png", search / "collapse_grid.png")
    fit = tmp_path / "fit"
    shutil.copytree(results / "mixture-cardata", fit)
    pages = {name: tmp_path / f"{name}.html" for name in ("search", "fit")}
    for name, out in pages.items():
        assert main(["report", str(tmp_path / name), "-o", str(out)]) == 0

    pw, browser, page, problems = open_page(pages["search"])
    try:
        trials = pd.read_csv(search / "trials.csv")
        assert len(page.query_selector_all("#trials tbody tr")) == len(trials)
        assert len(page.query_selector_all("#heldout-search tbody tr")) == len(pd.read_csv(search / "heldout.csv"))
        figures = page.inner_text("#figures")
        assert "map.png" in figures and "Inglehart–Welzel" in figures and "collapse_grid.png" in figures
        images = page.eval_on_selector_all("img", "xs => xs.map(i => i.naturalWidth)")
        assert len(images) == 3 and min(images) > 0            # trials chart, map, collapse
        page.goto(pages["fit"].resolve().as_uri())
        assert "mixture" in page.inner_text("#fit")
        assert page.eval_on_selector_all("#fit img", "xs => xs.map(i => i.naturalWidth)")[0] > 0   # objective history
        assert problems == []
    finally:
        browser.close()
        pw.stop()
