"""Pair interactions from an estimate's coalitions: exact against shapiq on every
coalition, exact for games of pairs on sampled designs, and a duplicate shows as
the most redundant pair."""

from itertools import combinations

import numpy as np
import pytest
import shapiq

from diffcredit.coalitions import sample_design
from diffcredit.estimators import IdentificationError
from diffcredit.estimators.interactions import interaction_fit, interactions


def all_coalitions(n):
    codes = np.arange(1, 2**n - 1)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool), codes


def shapiq_pairs(table, n, index):
    def game(coalitions):
        return np.array([table[int(np.dot(np.asarray(c, int), 1 << np.arange(n)))] for c in coalitions])

    found = shapiq.ExactComputer(n_players=n, game=game)(index=index, order=2)
    out = np.zeros((n, n))
    for key, value in found.dict_values.items():
        if len(key) == 2:
            out[key[0], key[1]] = out[key[1], key[0]] = value
    return out


@pytest.mark.parametrize("index", ["fsii", "fbii"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_coalition_gives_shapiqs_exact_values(index, seed):
    n = 5
    table = np.random.default_rng(seed).normal(size=2**n)
    masks, codes = all_coalitions(n)
    found = interaction_fit(masks, table[codes], table[0], table[-1], index)
    np.testing.assert_allclose(found, shapiq_pairs(table, n, index.upper()), atol=1e-8)


def pair_game(n, seed):
    """A game of singles and pairs, as a table over coalition codes, and its pair terms."""
    rng = np.random.default_rng(seed)
    single, pair = rng.normal(size=n), np.triu(rng.normal(size=(n, n)), 1)
    codes = np.arange(2**n)
    members = ((codes[:, None] >> np.arange(n)) & 1).astype(float)
    table = members @ single + np.einsum("ci,ij,cj->c", members, pair, members) + 0.7
    return table, pair + pair.T


@pytest.mark.parametrize("index", ["fsii", "fbii"])
def test_a_game_of_pairs_is_recovered_from_a_sampled_design(index):
    """Its interaction indices (SII, BII and the faithful ones) are its pair terms, and a
    second-order fit recovers them from any design that identifies them."""
    n = 6
    table, pairs = pair_game(n, 3)
    np.testing.assert_allclose(shapiq_pairs(table, n, "SII"), pairs, atol=1e-9)
    masks = sample_design(n, 40, "stratified", 0)
    codes = masks.astype(int) @ (1 << np.arange(n))
    found = interaction_fit(masks, table[codes], table[0], table[-1], index)
    np.testing.assert_allclose(found, pairs, atol=1e-8)


def test_a_duplicate_is_the_most_redundant_pair():
    """Players 0 and 1 hold the same data: a coalition's worth is concave in the distinct
    data it holds, so together they add what one adds (plus noise)."""
    n, rng = 6, np.random.default_rng(0)
    size = np.array([1.0, 1.0, 1.0, 2.0, 0.5, 1.5])

    def v(mask):
        held = mask.copy()
        held[1] = held[1] and not held[0]  # the copy adds nothing beside its original
        return np.sqrt(size @ held)

    masks = sample_design(n, 60, "stratified", 0)
    values = np.array([v(m) for m in masks]) + rng.normal(0, 0.02, len(masks))
    names = [f"c{i}" for i in range(n)]
    table = interactions(masks, values, 0.0, v(np.ones(n, bool)), names, "fsii", n_boot=100)
    top = table.iloc[0]
    assert (top["i"], top["j"]) == ("c0", "c1")
    assert top["ci_high"] < 0  # redundant, beyond the noise
    assert top["value"] < 1.5 * table.iloc[1]["value"] < 0  # and well below the next pair (all are: sqrt is concave)
    assert set(zip(table["i"], table["j"])) == {(f"c{a}", f"c{b}") for a, b in combinations(range(n), 2)}


def test_a_design_too_small_is_refused_with_the_reason():
    masks = sample_design(6, 14, "stratified", 0)
    with pytest.raises(IdentificationError, match="do not identify the 21 coefficients"):
        interaction_fit(masks, np.zeros(len(masks)), 0.0, 1.0)


@pytest.mark.parametrize("method, budget", [("exact", 14), ("leverage", 8)])
def test_the_estimate_job_writes_the_interactions_it_can_identify(tmp_path, method, budget):
    """Every coalition of four players: interactions.csv holds the game's pair terms. Eight
    coalitions cannot identify ten coefficients: no file, and the diagnostics say why."""
    import json

    import pandas as pd

    from diffcredit.artifacts import write_json, write_parquet
    from diffcredit.stages.estimates import estimate_values

    n, names = 4, ["a", "b", "c", "d"]
    table, pairs = pair_game(n, 5)
    masks = sample_design(n, budget, method, 0)
    design = pd.DataFrame(masks, columns=names)
    design.insert(0, "row", range(len(design)))
    write_parquet(design, tmp_path / "design.parquet")

    def score(name, code):
        path = tmp_path / f"{name}.json"
        write_json(path, {"n_images": 4, "properties": {"p": {"value": table[code], "higher_is_better": True}}},
                   seal=True)
        return str(path)

    codes = masks.astype(int) @ (1 << np.arange(n))
    spec = {"method": method, "scheme": method, "budget": budget, "seed": 0, "n_boot": 50, "shrink": False,
            "strategy": "sft", "properties": ["p"]}
    inputs = {"design": str(tmp_path / "design.parquet"), "rows": [score(f"r{i}", c) for i, c in enumerate(codes)],
              "empty": score("empty", 0), "full": score("full", 2**n - 1)}
    estimate_values(spec, inputs, str(tmp_path / "values"))
    reason = json.loads((tmp_path / "values" / "diagnostics.json").read_text())["p"]["interactions"]
    if method == "exact":
        found = pd.read_csv(tmp_path / "values" / "interactions.csv")
        assert reason == "fsii" and len(found) == 6 and (found["property"] == "p").all()
        want = {(names[i], names[j]): pairs[i, j] for i, j in combinations(range(n), 2)}
        assert {(r.i, r.j): r.value for r in found.itertuples()} == pytest.approx(want, abs=1e-8)
    else:
        assert not (tmp_path / "values" / "interactions.csv").exists()
        assert reason.startswith("not estimated: the design's 8 coalitions do not identify the 10 coefficients")
