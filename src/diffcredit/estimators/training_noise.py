"""Training randomness in the intervals: the spread of coalitions trained twice.

A coalition's model is one draw of its training's randomness (initial noise,
timesteps, minibatch order): train it again with another seed and v(S) moves. The
coalitions of a design are each trained once, so nothing in their values shows that
spread, and a design that fits its rows exactly (the singletons and complements of
the ``stratified`` design) has no residuals to show it either. Training the first k
rows again with the recipe's seed + 1 measures it: the pooled within-coalition
variance s^2 of (first run, second run) with k degrees of freedom.

Each draw b of the intervals then adds the values' error under that spread: sigma_b^2
= k s^2 / chi^2_k (the variance's posterior under a flat prior on log sigma, so a few
rows widen the intervals rather than pretend to know sigma), independent errors
N(0, sigma_b^2) on every row, and the estimate's change under them. The anchors are
the game's fixed end points (the full and the empty model) and get none. For a
bootstrap whose resampled rows or residuals already hold part of this spread, that
part is counted twice: the intervals err wide, at most by a factor sqrt(2) in the
training term, never narrow.
"""

from __future__ import annotations

import numpy as np


def pooled_variance(first, again) -> tuple[float, int]:
    """The within-coalition variance of coalitions trained more than once, and its
    degrees of freedom.

    Args:
        first: (k,) the coalitions' values from their first training.
        again: (k, r) their values from r more trainings (other seeds).
    """
    first = np.asarray(first, dtype=float)
    again = np.asarray(again, dtype=float)
    if again.ndim == 1:
        again = again[:, None]
    if first.ndim != 1 or again.shape[0] != len(first) or again.shape[1] < 1:
        raise ValueError(f"first must be (k,) and again (k, r >= 1); got {first.shape} and {again.shape}")
    runs = np.concatenate([first[:, None], again], axis=1)
    if not np.isfinite(runs).all():
        raise ValueError("the replicated coalitions' values must be finite")
    df = runs.size - len(runs)
    return float(((runs - runs.mean(axis=1, keepdims=True)) ** 2).sum() / df), int(df)


def training_draws(point, masks, values, v_empty: float, v_full: float, variance: float, df: int,
                   n_draws: int, seed: int) -> np.ndarray:
    """(n_draws, n) draws of the values' error from training randomness of the rows.

    `point` is the method's point estimator; `variance` and `df` from
    `pooled_variance`. Draw b scales its errors by sigma_b, drawn from the
    variance's posterior, so the draws carry the uncertainty of sigma too.
    """
    if not (np.isfinite(variance) and variance >= 0) or df < 1:
        raise ValueError(f"variance must be finite and >= 0 with df >= 1; got {variance!r}, {df!r}")
    rng = np.random.default_rng([seed, 0x7A1])  # apart from the bootstrap's stream
    value = point(masks, values, v_empty, v_full)
    if variance == 0.0:
        return np.zeros((n_draws, len(value)))
    sigma = np.sqrt(variance * df / rng.chisquare(df, size=n_draws))
    errors = rng.standard_normal((n_draws, len(values))) * sigma[:, None]
    return np.stack([point(masks, values + e, v_empty, v_full) for e in errors]) - value
