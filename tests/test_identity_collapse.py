"""Diversity-collapse analysis: the k-NN radius on hand-made points, where injection lands
(baseline and PSII states equal before the injection layer, PSII spread after it) on a tiny
random Llama, and the written table and PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from transformers import AutoTokenizer

from raysim.engine.hf import HFEngine
from raysim.engine.loading import embedded_default_dir
from raysim.identity.agents import load_agents
from raysim.identity.collapse import (COLUMNS, final_token_states, grid_layers, kernel_pca_2d, knn_radius,
                                      radius_table, run_collapse)
from test_identity_noise_calibration import N_LAYERS, random_library, tiny_loaded, tiny_preset

pytestmark = pytest.mark.usefixtures("one_thread")

INJECT_AT = 2


@pytest.fixture(scope="module")
def engine():
    return HFEngine(tiny_loaded(AutoTokenizer.from_pretrained(embedded_default_dir())))


@pytest.fixture(scope="module")
def setup(engine):
    # Large vectors and noise: PSII must visibly spread the agents from its layer on.
    library = random_library(engine.loaded, std=3.0)
    agents, codebook = load_agents("synthetic:300", 12, seed=2)
    return library, tiny_preset(layer=INJECT_AT, sigma=0.5), agents, codebook


@pytest.fixture(scope="module")
def states(engine, setup):
    library, preset, agents, codebook = setup
    # chunk 5: several forward passes, the last one shorter
    return final_token_states(engine, library, preset, agents, codebook, "Q1", seed=0, chunk=5)


def test_knn_radius_of_hand_made_points():
    line = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radius(line, 1) == pytest.approx((1 + 1 + 2 + 3) / 4)
    assert knn_radius(line, 2) == pytest.approx((3 + 2 + 3 + 5) / 4)
    square = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    assert knn_radius(square, 3) == pytest.approx(5.0)


def test_knn_radius_of_identical_points_is_zero():
    assert knn_radius(np.ones((6, 3)), 2) == 0.0
    # a duplicate is a neighbour at distance 0
    assert knn_radius(np.array([[0.0], [0.0], [5.0]]), 1) == pytest.approx(5.0 / 3)


@pytest.mark.parametrize("k", [0, 4])
def test_knn_radius_needs_k_below_the_point_count(k):
    with pytest.raises(ValueError, match="k must be in 1..3"):
        knn_radius(np.random.default_rng(0).normal(size=(4, 2)), k)


def test_injection_lands_at_its_layer(states):
    assert states.layers == list(range(N_LAYERS + 1)) and states.injected == [INJECT_AT]
    assert states.baseline.shape == states.psii.shape == (12, N_LAYERS + 1, 64)
    # before the injection layer: bitwise the same states; from it on: different
    assert np.array_equal(states.baseline[:, :INJECT_AT], states.psii[:, :INJECT_AT])
    assert not np.any(np.all(states.baseline[:, INJECT_AT:] == states.psii[:, INJECT_AT:], axis=-1))
    # every prompt ends in the same token: one embedding for all agents
    assert np.ptp(states.baseline[:, 0], axis=0).max() == 0.0


def test_psii_spreads_agents_after_the_injection_layer(states):
    table = radius_table(states, k=3)
    assert list(table.columns) == COLUMNS and list(table["layer"]) == list(range(N_LAYERS + 1))
    before, after = table[table["layer"] < INJECT_AT], table[table["layer"] >= INJECT_AT]
    assert (before["knn_radius_psii"] == before["knn_radius_baseline"]).all()
    assert (after["knn_radius_psii"] > after["knn_radius_baseline"]).all()
    assert (after["ratio"] > 1).all()
    assert table.loc[0, "knn_radius_baseline"] == 0.0 and np.isnan(table.loc[0, "ratio"])
    assert list(table["injected"]) == [layer == INJECT_AT for layer in range(N_LAYERS + 1)]


def test_kernel_pca_is_deterministic(states):
    a = kernel_pca_2d(states.baseline[:, N_LAYERS], states.psii[:, N_LAYERS])
    b = kernel_pca_2d(states.baseline[:, N_LAYERS], states.psii[:, N_LAYERS])
    assert a[0].shape == a[1].shape == (12, 2)
    np.testing.assert_array_equal(a[0], b[0])
    # identical points (layer 0) project to one point
    flat = kernel_pca_2d(states.baseline[:, 0], states.psii[:, 0])
    assert np.ptp(np.concatenate(flat), axis=0).max() == pytest.approx(0.0, abs=1e-9)


def test_grid_layers():
    assert grid_layers(30, [15, 19, 24]) == [1, 5, 9, 13, 15, 17, 19, 21, 24, 25, 29, 30]
    assert grid_layers(4, [2], every=4) == [1, 2, 4]


def test_run_writes_table_and_readable_pngs(engine, setup, tmp_path):
    library, preset, agents, codebook = setup
    table = run_collapse(engine, library, preset, agents, codebook, tmp_path, k=3, every=2)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "collapse.csv"), table)
    md = (tmp_path / "collapse.md").read_text()
    assert "question Q1" in md and md.count("\n| ") == N_LAYERS + 2   # header row + one per layer
    grid = imread(tmp_path / "collapse_grid.png")
    assert grid.ndim == 3 and grid.shape[0] > 200 and grid.shape[1] > 400 and grid.shape[2] in (3, 4)
    layers = sorted((tmp_path / "layers").glob("layer_*.png"))
    assert [p.name for p in layers] == [f"layer_{i:02d}.png" for i in range(N_LAYERS + 1)]
    assert all(imread(p).shape[0] > 100 for p in layers)
    assert not [p for p in tmp_path.rglob(".*")]   # no temporary files left
