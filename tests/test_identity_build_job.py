"""The vector-build Ray job: actor pool, resumption, language step, and the CLI on its library."""

import numpy as np
import pytest
import ray

from raysim.cli import main
from raysim.engine.loading import ModelSpec
from raysim.identity.build import BuildParams
from raysim.identity.dataset import AttributeSet, DemographicDataset
from raysim.identity.library import VectorLibrary
from raysim.runs.rundir import RunDirError
from raysim.pipeline.vectors import build_library, language_step, work_dir

pytestmark = pytest.mark.timeout(300)

TINY = ModelSpec(random_init="tiny-llama")
QUESTIONS = ("What do you do on a Sunday?", "How do you pay for a large purchase?")
DATASET = DemographicDataset({
    "Q260": AttributeSet("Q260", QUESTIONS, {1: ("You are a man.",), 2: ("You are a woman.",)}),
    "Q285": AttributeSet("Q285", QUESTIONS, {1: ("You earn most of the money at home.",),
                                             2: ("Someone else earns most of the money at home.",)}),
}, version="test")
PARAMS = BuildParams(max_new_tokens=4)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_build_resumes_and_writes_a_complete_library(tmp_path, capsys):
    out = tmp_path / "lib"
    kwargs = dict(params=PARAMS, actors=2, num_cpus=0.5, batch_size=1, emit=print)
    assert build_library(DATASET, TINY, out, limit=2, **kwargs) is None      # stopped part-way
    assert len(list((work_dir(out) / "results").glob("*.safetensors"))) == 2 and not out.exists()
    library = build_library(DATASET, TINY, out, language_step=language_step(TINY, ["en", "es"], num_cpus=0.5),
                            **kwargs)
    log = capsys.readouterr().out
    assert "4 units (2 done, 2 to do)" in log and "held-out loss" in log
    assert not work_dir(out).exists()
    back = VectorLibrary.load(out)
    assert back.attributes == {"Q260": [1, 2], "Q285": [1, 2]} and back.languages == ["en", "es"]
    np.testing.assert_allclose(back.vector("Q260", 1), -back.vector("Q260", 2), atol=1e-6)
    report = back.manifest.parameters["languages"]["heldout"]
    assert report["en"]["heldout_after"] < report["en"]["heldout_before"]

    assert main(["identity", "show", str(out), "--layers", "0", "4"]) == 0
    shown = capsys.readouterr().out
    assert "2 attributes" in shown and "Q285" in shown and "language vectors: en" in shown


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "lib"
    build_library(DATASET, TINY, out, params=PARAMS, actors=1, num_cpus=0.5, limit=1, emit=lambda s: None)
    with pytest.raises(RunDirError, match="another configuration"):
        build_library(DATASET, TINY, out, params=BuildParams(max_new_tokens=5), actors=1, num_cpus=0.5,
                      emit=lambda s: None)
