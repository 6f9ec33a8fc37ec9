"""What a user reads with hundreds of contributors: the printout, the bar chart and the
convergence plot show the best and the worst, and say where the rest are."""

import numpy as np
import pandas as pd
from PIL import Image

from diffcredit.diagnostics import LABELLED, labelled_players, plot_convergence
from diffcredit.summary import values_text
from diffcredit.values import SHOWN, credit_table, ends, plot_values


def table(n, higher=True, seed=0):
    rng = np.random.default_rng(seed)
    value = rng.normal(size=n)
    df = pd.DataFrame({"contributor": [f"artist{i:03d}" for i in range(n)], "value": value,
                       "ci_low": value - 0.1, "ci_high": value + 0.1})
    return credit_table(df, "aesthetic", higher)


def test_the_ends_are_the_best_and_worst_by_credit():
    for higher in (True, False):
        t = table(258, higher)
        best, worst, hidden = ends(t)
        credit = np.sort(t["credit"].to_numpy())[::-1]
        assert len(best) == len(worst) == SHOWN // 2 and hidden == 258 - SHOWN
        np.testing.assert_allclose(best["credit"], credit[: SHOWN // 2])
        np.testing.assert_allclose(worst["credit"], credit[-(SHOWN // 2):])
    small = table(SHOWN)
    best, worst, hidden = ends(small)
    assert len(best) == SHOWN and worst.empty and hidden == 0
    assert best["rank"].tolist() == sorted(small["rank"])


def test_the_printout_shows_the_ends_and_says_where_the_rest_are():
    t = table(258)
    lines = values_text(t, ["contributor", "value", "rank"], "{:.4f}", "results/values.csv").splitlines()
    assert len(lines) == 1 + SHOWN + 1  # header, the ends, the line between
    between = lines[1 + SHOWN // 2]
    assert between.strip() == f"... {258 - SHOWN} more between, in results/values.csv"
    ranks = [int(x.split()[-1]) for x in lines[1:] if x is not between]
    assert ranks == list(range(1, SHOWN // 2 + 1)) + list(range(258 - SHOWN // 2 + 1, 259))
    assert len(values_text(table(12), ["contributor", "rank"], "{:.4f}", "v.csv").splitlines()) == 13


def test_the_bar_chart_stays_readable(tmp_path):
    heights = {}
    for n in (SHOWN, 258):
        plot_values(table(n), tmp_path / f"{n}.png", "aesthetic")
        heights[n] = Image.open(tmp_path / f"{n}.png").size[1]
    assert heights[258] < 1.1 * heights[SHOWN]  # was 0.35 in per contributor: 11,000 pixels at 258


def test_the_convergence_plot_names_the_highest_and_lowest_final_values(tmp_path):
    rng = np.random.default_rng(3)
    n = 60
    final = rng.normal(size=n)
    conv = pd.DataFrame([{"player": p, "prefix": k, "value": final[p] * k / 40 + rng.normal() * (k < 40)}
                         for p in range(n) for k in (10, 20, 40)])
    named = labelled_players(conv)
    k = LABELLED // 4
    assert named == list(np.argsort(final)[::-1][:k]) + list(np.argsort(final)[:k])
    few = conv[conv["player"] < LABELLED]
    assert labelled_players(few) == list(range(LABELLED))
    path = plot_convergence(conv, tmp_path / "conv.png", names=[f"a{i}" for i in range(n)], title="fd")
    assert Image.open(path).size == Image.open(plot_convergence(few, tmp_path / "few.png")).size
