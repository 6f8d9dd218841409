"""The Inglehart–Welzel map (issue 18, item 6): the recipe recovers a planted two-factor
structure, a perfect simulator lands on the human positions, and `raysim map` writes its files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from raysim.cli import main
from raysim.metrics.iw_map import (DIMENSIONS, SURVIVAL_SELFEXPRESSION, TRADITIONAL_SECULAR, country_positions,
                                   fit_map, human_indicators, simulated_indicators, varimax)
from raysim.survey.codebook import load_codebook
from raysim.survey.synthetic import write_synthetic

CB = load_codebook("wvs7")
# planted country means: (secular, self-expression), nearly uncorrelated across countries (two
# orthogonal factors can only recover the order of uncorrelated ones exactly)
PLANTED = {"AAA": (-1.5, 0.4), "BBB": (-0.5, -1.4), "CCC": (0.3, 1.4), "DDD": (1.0, -0.6), "EEE": (1.8, 0.2)}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def planted_population(n_per: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for c, (m1, m2) in PLANTED.items():
        f1 = m1 + rng.normal(0, 0.7, n_per)
        f2 = m2 + rng.normal(0, 0.7, n_per)

        def scale(latent, qid, rising=True):   # a latent value onto the item's codes (rising: code grows)
            codes = list(CB[qid].codes)
            x = latent + rng.normal(0, 0.6, n_per)
            idx = np.clip(np.round((x + 3) / 6 * (len(codes) - 1)), 0, len(codes) - 1).astype(int)
            return [codes[i] if rising else codes[::-1][i] for i in idx]

        def mentioned(p):
            return np.where(rng.random(n_per) < p, 1, 2)

        first_post = rng.random(n_per) < _sigmoid(1.5 * f2)
        second_post = rng.random(n_per) < _sigmoid(1.5 * f2)
        frames.append(pd.DataFrame({
            "respondent_id": np.arange(n_per) + 1000 * len(frames), "country": c, "weight": rng.uniform(0.5, 1.5, n_per),
            "Q164": scale(f1, "Q164", rising=False), "Q184": scale(f1, "Q184"), "Q254": scale(f1, "Q254"),
            "Q45": scale(f1, "Q45"),
            "Q8": mentioned(_sigmoid(1.5 * f1)), "Q14": mentioned(_sigmoid(1.5 * f1)),
            "Q15": mentioned(_sigmoid(-1.5 * f1)), "Q17": mentioned(_sigmoid(-1.5 * f1)),
            "Q154": np.where(first_post, 2, 1), "Q155": np.where(second_post, 4, 3),
            "Q46": scale(f2, "Q46", rising=False), "Q182": scale(f2, "Q182"), "Q209": scale(f2, "Q209", rising=False),
            "Q57": mentioned(_sigmoid(1.5 * f2)),
        }))
    return pd.concat(frames, ignore_index=True)


def test_varimax_rotates_towards_simple_structure():
    simple = np.array([[0.9, 0.0], [0.8, 0.1], [0.0, 0.85], [0.1, 0.9]])
    angle = 0.6
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    back = varimax(simple @ rotation)
    assert np.allclose(np.abs(back), np.abs(simple), atol=0.02) or np.allclose(np.abs(back[:, ::-1]), np.abs(simple),
                                                                               atol=0.02)


def test_the_recipe_recovers_a_planted_two_factor_structure():
    people = planted_population()
    fitted = fit_map(human_indicators(people, CB))
    secular = ["god_unimportant", "autonomy", "abortion", "low_pride", "authority_bad"]
    selfexp = ["postmaterialism", "happiness", "homosexuality", "petition", "trust"]
    loads = fitted.loadings
    assert (loads.loc[secular, TRADITIONAL_SECULAR] > 0.3).all()          # each block on its own factor,
    assert (loads.loc[selfexp, SURVIVAL_SELFEXPRESSION] > 0.2).all()      # positive at its pole
    assert (loads.loc[secular, TRADITIONAL_SECULAR].abs() > loads.loc[secular, SURVIVAL_SELFEXPRESSION].abs()).all()
    assert (loads.loc[selfexp, SURVIVAL_SELFEXPRESSION].abs() > loads.loc[selfexp, TRADITIONAL_SECULAR].abs()).all()
    positions = country_positions(fitted.scores(human_indicators(people, CB)), "human").set_index("country")
    for j, dim in enumerate(DIMENSIONS):
        planted = [PLANTED[c][j] for c in positions.index]
        assert spearmanr(planted, positions[dim]).statistic == pytest.approx(1.0)   # the planted order


def one_hot_results(people: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for qid in ("Q164", "Q8", "Q14", "Q15", "Q17", "Q184", "Q254", "Q45", "Q154", "Q155", "Q46", "Q182", "Q209", "Q57"):
        codes = list(CB[qid].codes)
        for rid, country, w, a in zip(people["respondent_id"], people["country"], people["weight"], people[qid]):
            rows.append({"respondent_id": rid, "country": country, "weight": w, "qid": qid, "option_codes": codes,
                         "probs": [1.0 if c == a else 0.0 for c in codes], "sampled_code": None, "valid": True})
    return pd.DataFrame(rows)


def test_a_simulator_that_answers_as_the_humans_did_lands_on_their_positions_and_a_shift_moves_it():
    people = planted_population(n_per=150)
    fitted = fit_map(human_indicators(people, CB))
    human = country_positions(fitted.scores(human_indicators(people, CB)), "human").set_index("country")
    perfect = country_positions(fitted.scores(simulated_indicators(one_hot_results(people), CB)), "sim")
    np.testing.assert_allclose(perfect.set_index("country")[list(DIMENSIONS)], human[list(DIMENSIONS)], atol=1e-9)
    more_secular = people.assign(Q184=10, Q164=1)          # abortion always justifiable, God not important
    moved = country_positions(fitted.scores(simulated_indicators(one_hot_results(more_secular), CB)), "sim")
    assert (moved.set_index("country")[TRADITIONAL_SECULAR] > human[TRADITIONAL_SECULAR] + 0.2).all()


def test_results_without_the_maps_questions_are_a_clear_error():
    from raysim.metrics.iw_map import MapError

    rows = one_hot_results(planted_population(n_per=20))
    with pytest.raises(MapError, match="answer 4 of the map's 14 questions"):
        simulated_indicators(rows[rows["qid"].isin(["Q164", "Q8", "Q14", "Q15"])], CB)


def test_raysim_map_writes_csv_loadings_and_png(tmp_path, capsys):
    write_synthetic(1500, tmp_path / "pop", seed=4)
    assert main(["map", str(tmp_path / "pop"), "-o", str(tmp_path / "map")]) == 0
    table = pd.read_csv(tmp_path / "map" / "map.csv")
    assert list(table.columns) == ["source", "country", *DIMENSIONS, "respondents"]
    assert (table["source"] == "human").all() and table["country"].is_unique
    assert (tmp_path / "map" / "map.png").stat().st_size > 10_000
    assert "wrote map.csv" in capsys.readouterr().out
