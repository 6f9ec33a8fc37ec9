import numpy as np
import pandas as pd
import pytest

from diffcredit.coalitions import min_budget, sample_design
from diffcredit.diagnostics import convergence, efficiency_gap, plot_convergence, rank_stability
from diffcredit.estimators import IdentificationError, estimate

N = 6
COST = np.linspace(0.1, 1.0, N)


def airport(masks):
    return np.where(masks, COST, 0.0).max(axis=1)


V_EMPTY, V_FULL = 0.0, 1.0


def evaluated(scheme, budget, seed=0):
    masks = sample_design(N, budget, scheme, seed)
    return masks, airport(masks)


def test_efficiency_gap():
    masks, values = evaluated("kernel_paired", 40)
    shapley = estimate(masks, values, V_EMPTY, V_FULL, "kernelshap", n_boot=0)
    assert efficiency_gap(shapley, V_EMPTY, V_FULL) == pytest.approx(0.0, abs=1e-12)
    masks, values = evaluated("banzhaf", 40)
    banzhaf = estimate(masks, values, V_EMPTY, V_FULL, "banzhaf", n_boot=0)
    gap = efficiency_gap(banzhaf, V_EMPTY, V_FULL)
    assert gap == pytest.approx(banzhaf["value"].sum() - (V_FULL - V_EMPTY))
    assert abs(gap) > 1e-3  # Banzhaf values of the airport game are not efficient


@pytest.mark.filterwarnings("ignore::diffcredit.estimators.BootstrapWarning")
@pytest.mark.parametrize("scheme, method", [
    ("kernel", "kernelshap"),
    ("kernel_paired", "kernelshap"),
    ("leverage", "leverage"),
    ("stratified", "stratified"),
    ("stratified", "leverage"),
    ("kernel", "stratified"),
    ("banzhaf", "banzhaf"),
])
def test_convergence_prefixes(scheme, method):
    budget = 41
    masks, values = evaluated(scheme, budget)
    conv = convergence(masks, values, V_EMPTY, V_FULL, method, n_points=6, seed=1, n_boot=30)
    assert list(conv.columns) == ["prefix", "player", "value", "ci_low", "ci_high", "ci_width"]
    prefixes = sorted(conv["prefix"].unique())
    assert prefixes[-1] == budget
    assert len(prefixes) <= 7  # n_points, plus the whole design
    assert prefixes[0] >= min_budget(scheme, method, N)
    if scheme in ("kernel_paired", "leverage", "stratified"):
        assert all(p % 2 == 0 for p in prefixes[:-1])
    for prefix in prefixes:
        part = conv[conv["prefix"] == prefix].set_index("player")
        assert part.index.tolist() == list(range(N))
        # Prefix stability: a prefix is the design a smaller budget would draw.
        smaller = sample_design(N, int(prefix), scheme, 0)
        direct = estimate(smaller, airport(smaller), V_EMPTY, V_FULL, method, seed=1, n_boot=30)
        np.testing.assert_allclose(part["value"], direct["value"])
        np.testing.assert_allclose(part["ci_width"], direct["ci_high"] - direct["ci_low"])


def test_convergence_skips_unidentified_prefixes():
    masks, values = evaluated("kernel", 60, seed=3)
    conv = convergence(masks, values, V_EMPTY, V_FULL, "kernelshap", n_points=60, n_boot=0)
    for prefix in range(min_budget("kernel", "kernelshap", N), 61):
        try:
            estimate(masks[:prefix], values[:prefix], V_EMPTY, V_FULL, "kernelshap", n_boot=0)
            identified = True
        except IdentificationError:
            identified = False
        assert identified == (prefix in set(conv["prefix"]))


def test_convergence_of_the_stratified_design_starts_with_the_singletons():
    """With method stratified the first prefix is the whole singleton stratum
    (2n rows); every prefix from there on identifies the values."""
    masks, values = evaluated("stratified", 40, seed=2)
    conv = convergence(masks, values, V_EMPTY, V_FULL, "stratified", n_points=40, n_boot=0)
    prefixes = sorted(conv["prefix"].unique())
    assert prefixes[0] == 2 * N
    assert prefixes == list(range(2 * N, 40, 2)) + [40]
    shapley = estimate(masks, values, V_EMPTY, V_FULL, "stratified", n_boot=0)
    assert efficiency_gap(shapley, V_EMPTY, V_FULL) == pytest.approx(0.0, abs=1e-12)


def test_convergence_of_deterministic_methods_is_one_point():
    masks, values = evaluated("exact", 2**N - 2)
    conv = convergence(masks, values, V_EMPTY, V_FULL, "exact")
    assert conv["prefix"].unique().tolist() == [2**N - 2]
    assert (conv["ci_width"] == 0).all()


def test_convergence_rejects_short_designs_and_unknown_methods():
    masks, values = evaluated("kernel_paired", 8)
    with pytest.raises(ValueError, match="needs at least 10"):
        convergence(masks, values, V_EMPTY, V_FULL, "kernelshap")
    with pytest.raises(ValueError, match="unknown method"):
        convergence(masks, values, V_EMPTY, V_FULL, "shap")


def long_format(table):
    """{prefix: values by player} -> convergence-style long frame."""
    return pd.DataFrame(
        [(prefix, player, v) for prefix, vals in table.items() for player, v in enumerate(vals)],
        columns=["prefix", "player", "value"],
    )


def test_rank_stability():
    conv = long_format({
        10: [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
        20: [0.0, 4.0, 3.0, 5.0, 2.0, 1.0],
    })
    stability = rank_stability(conv, k=2).set_index("prefix")
    assert stability.index.tolist() == [10, 20]
    # top-2 {0, 1} vs {3, 1}; bottom-2 {5, 4} vs {0, 5}: one shared of three.
    assert stability.loc[10, "top_jaccard"] == pytest.approx(1 / 3)
    assert stability.loc[10, "bottom_jaccard"] == pytest.approx(1 / 3)
    assert stability.loc[20].tolist() == [1.0, 1.0, 1.0]
    assert stability.loc[10, "spearman"] < 1.0


def test_rank_stability_on_a_real_convergence_run():
    masks, values = evaluated("leverage", 62)
    conv = convergence(masks, values, V_EMPTY, V_FULL, "leverage", n_boot=0)
    stability = rank_stability(conv, k=2)
    assert list(stability.columns) == ["prefix", "top_jaccard", "bottom_jaccard", "spearman"]
    assert stability["prefix"].tolist() == sorted(conv["prefix"].unique())
    assert stability.iloc[-1, 1:].tolist() == [1.0, 1.0, 1.0]
    assert stability[["top_jaccard", "bottom_jaccard"]].stack().between(0, 1).all()


def test_rank_stability_rejects_bad_k():
    conv = long_format({1: [1.0, 2.0, 3.0]})
    for k in (0, 4, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            rank_stability(conv, k=k)


def test_plot_convergence(tmp_path):
    masks, values = evaluated("kernel_paired", 40)
    conv = convergence(masks, values, V_EMPTY, V_FULL, "kernelshap", n_points=4, n_boot=20)
    names = [f"artist {i}" for i in range(N)]
    path = plot_convergence(conv, tmp_path / "plots" / "conv.png", names=names, title="airport")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = plot_convergence(conv, tmp_path / "plain.png")
    assert plain.stat().st_size > 1000
    with pytest.raises(ValueError, match="names has 2 entries for 6 players"):
        plot_convergence(conv, tmp_path / "bad.png", names=names[:2])


@pytest.mark.parametrize("method, scheme", [("exact", "exact"), ("loo", "loo"), ("kernelshap", "kernel_paired"),
                                            ("leverage", "leverage"), ("stratified", "stratified")])
def test_an_estimate_of_two_contributors_is_written(tmp_path, method, scheme):
    """Two contributors (the fewest a config allows): rank stability looks at the top and
    bottom two, not three, and the estimate job writes its values."""
    import pandas as pd

    from diffcredit.artifacts import write_json, write_parquet
    from diffcredit.coalitions import sample_design
    from diffcredit.stages.estimates import estimate_values

    masks = sample_design(2, 2, scheme, 0)
    design = pd.DataFrame(masks, columns=["a", "b"])
    design.insert(0, "row", range(len(design)))
    write_parquet(design, tmp_path / "design.parquet")

    def score(name, value):
        path = tmp_path / f"{name}.json"
        write_json(path, {"n_images": 4, "properties": {"p": {"value": value, "higher_is_better": True}}}, seal=True)
        return str(path)

    rows = [score(f"row{i}", 1.0 * m[0] + 2.0 * m[1]) for i, m in enumerate(masks)]  # additive: a adds 1, b 2
    spec = {"method": method, "scheme": scheme, "budget": 2, "seed": 0, "n_boot": 0, "shrink": False,
            "strategy": "sft", "properties": ["p"]}
    inputs = {"design": str(tmp_path / "design.parquet"), "rows": rows, "empty": score("empty", 0.0),
              "full": score("full", 3.0)}
    table = estimate_values(spec, inputs, str(tmp_path / "values"))
    assert table.set_index("contributor")["value"].to_dict() == pytest.approx({"a": 1.0, "b": 2.0})
    assert (tmp_path / "values" / "diagnostics.json").is_file()


def test_an_estimates_warnings_are_kept_in_its_diagnostics(tmp_path):
    """Eleven players and 30 stratified coalitions: the 8 middle rows are alone in their
    sizes and teach the method nothing; the estimate keeps that warning for the printout."""
    import json

    import pandas as pd

    from diffcredit.artifacts import write_json, write_parquet
    from diffcredit.coalitions import sample_design
    from diffcredit.stages.estimates import estimate_values

    n = 11
    masks = sample_design(n, 30, "stratified", 0)
    names = [f"c{i}" for i in range(n)]
    design = pd.DataFrame(masks, columns=names)
    design.insert(0, "row", range(len(design)))
    write_parquet(design, tmp_path / "design.parquet")
    weights = np.linspace(0.5, 1.5, n)

    def score(name, mask):
        path = tmp_path / f"{name}.json"
        write_json(path, {"n_images": 4, "properties": {"p": {"value": float(np.sqrt(weights @ mask)),
                                                               "higher_is_better": True}}}, seal=True)
        return str(path)

    spec = {"method": "stratified", "scheme": "stratified", "budget": 30, "seed": 0, "n_boot": 50,
            "shrink": False, "strategy": "sft", "properties": ["p"]}
    inputs = {"design": str(tmp_path / "design.parquet"), "rows": [score(f"r{i}", m) for i, m in enumerate(masks)],
              "empty": score("empty", np.zeros(n)), "full": score("full", np.ones(n))}
    estimate_values(spec, inputs, str(tmp_path / "values"))
    (warning,) = json.loads((tmp_path / "values" / "diagnostics.json").read_text())["p"]["warnings"]
    assert "8 of the 10 coalition sizes teach method 'stratified' nothing (sizes 2, 3, 4, 5, 6, 7, 8, 9: 8 with a single coalition)" in warning
