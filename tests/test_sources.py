"""Population sources: resolved by name in one place (run configs, experiments' --population,
calibration's agents), a source of one's own as one module, third-party ones by entry point."""

from __future__ import annotations

import sys
import textwrap

import pytest
import yaml

from survey_helpers import write_survey
from raysim.identity.agents import load_agents
from raysim.pipeline.config import ConfigError, parse_config
from raysim.pipeline.experiment import population_override
from raysim.survey.population import CODEBOOK_FILE, read_population
from raysim.survey.sources import base, parse_source, registered_sources, source_from_text

BASE = {"method": "uniform", "questions": 0}


def test_builtin_sources_are_registered():
    assert {"path", "synthetic", "cardata", "survey"} <= set(registered_sources())


@pytest.mark.parametrize("raw, resolved", [
    ({"synthetic": {"n": 50}}, {"synthetic": {"n": 50, "seed": 0}}),
    ({"cardata": True}, {"cardata": True}),
])
def test_resolved_source_is_what_earlier_runs_recorded(raw, resolved, tmp_path):
    """The resolved config keeps the shapes runs made before the registry recorded (their
    hashes, and so their resumption, stay)."""
    cfg = parse_config({**BASE, "population": raw})
    assert cfg.resolved(tmp_path)["population_source"] == resolved
    assert cfg.population_path(tmp_path) == tmp_path.resolve() / "population"


@pytest.mark.parametrize("raw, needle", [
    ({"synthetic": {"n": 0}}, "population.synthetic.n must be a positive integer"),
    ({"synthetic": {"n": 5, "size": 1}}, r"population.synthetic: unknown key\(s\) \['size'\]"),
    ({"cardata": "yes"}, "population.cardata must be true"),
    ({"census": "x.csv"}, "unknown population source 'census'"),
    ({"survey": {"file": "nope.csv", "codebook": "nope.yaml", "country_code": "NZL"}}, "population.survey.file"),
])
def test_bad_sources_are_config_errors(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config({**BASE, "population": raw})


def test_command_line_text_names_the_same_sources(tmp_path):
    assert population_override("cardata") == {"cardata": True}
    assert population_override("synthetic:30") == {"synthetic": {"n": 30, "seed": 0}}
    assert population_override(str(tmp_path)) == {"path": str(tmp_path.resolve())}
    with pytest.raises(ConfigError, match="no such file or directory"):
        population_override(str(tmp_path / "nope"))
    agents, codebook = load_agents("synthetic:40", 5, seed=1)
    assert len(agents) == 5 and codebook.name == "wvs7"


def test_survey_source_imports_into_the_run_directory(tmp_path):
    data, codebook = write_survey(tmp_path / "in")
    cfg = parse_config({**BASE, "population": {"survey": {
        "file": str(data), "codebook": str(codebook), "id": "rid", "country_code": "NZL", "weight": "wt"}}})
    resolved = cfg.resolved(tmp_path / "run")
    source = resolved["population_source"]["survey"]
    assert source["codebook_sha256"] == resolved["codebook_sha256"] and source["weight"] == "wt"
    assert resolved["questions"] == ["satisfaction", "trust"]
    path = cfg.population.ensure(tmp_path / "run")
    assert (path / CODEBOOK_FILE).is_file() and len(read_population(path)) == 300
    # an edited codebook is another run
    codebook.write_text(codebook.read_text().replace("Region", "Area"))
    assert parse_config(yaml.safe_load(yaml.safe_dump({**BASE, "population": {"survey": {
        "file": str(data), "codebook": str(codebook), "id": "rid", "country_code": "NZL", "weight": "wt"}}}))
    ).resolved(tmp_path / "run")["codebook_sha256"] != resolved["codebook_sha256"]


def test_a_mixed_language_method_on_a_one_language_profile_is_refused_before_running(tmp_path):
    data, codebook = write_survey(tmp_path / "in")
    cfg = parse_config({**BASE, "method": "psii", "population": {"survey": {
        "file": str(data), "codebook": str(codebook), "id": "rid", "country_code": "NZL"}}})
    with pytest.raises(ConfigError, match="method .psii.: codebook .* has a profile in one language"):
        cfg.resolved(tmp_path / "run")


def test_a_source_of_ones_own_is_one_module_found_by_entry_point(tmp_path, monkeypatch):
    """A plugin distribution on the path registers a source under raysim.population_sources:
    run configs and --population text then resolve it like the built-in ones."""
    (tmp_path / "my_panel.py").write_text(textwrap.dedent('''
        from raysim.survey.sources import PopulationSource, register_source
        from raysim.survey.synthetic import write_synthetic

        @register_source
        class PanelSource(PopulationSource):
            """A company panel: here, 12 synthetic respondents of one wave."""
            key = "panel"

            def __init__(self, wave):
                self.wave = wave

            @classmethod
            def parse(cls, value, where):
                return cls(int(value))

            @classmethod
            def from_text(cls, text):
                return cls(int(text.removeprefix("panel:"))) if text.startswith("panel:") else None

            def to_config(self):
                return self.wave

            def describe(self):
                return f"panel wave {self.wave}"

            def write(self, out):
                write_synthetic(12, out, seed=self.wave)
    '''))
    dist = tmp_path / "my_panel-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-panel\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[raysim.population_sources]\npanel = my_panel\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base.SOURCES, "_loaded", False)   # look up the entry points again
    monkeypatch.setattr(base.SOURCES, "_parts", dict(base.SOURCES.all()))
    try:
        cfg = parse_config({**BASE, "population": {"panel": 3}})
        assert cfg.population.describe() == "panel wave 3"
        assert cfg.resolved(tmp_path / "run")["population_source"] == {"panel": 3}
        assert len(read_population(cfg.population.ensure(tmp_path / "run"))) == 12
        assert source_from_text("panel:4").to_mapping() == {"panel": 4}
        assert parse_source({"panel": 5}) == source_from_text("panel:5")
    finally:
        sys.modules.pop("my_panel", None)
