"""Is the credit right? Evaluations against retraining from scratch.

- LDS (linear datamodeling score): random alpha-fraction subsets of contributors are
  retrained; per retrain seed, the Spearman correlation (x 100) between the sum of a
  subset's values and the retrained property; the mean over seeds with a t interval, and a
  bootstrap interval over the subsets.
- Fidelity: one design's coalitions under a cheap strategy (sft, ft, ga) and under
  retrain: agreement of the property and of the Shapley values, the share of retrain
  values inside the strategy's reported intervals, and the cost ratio.
- Counterfactual: retrain without each method's top (and bottom) fraction of
  contributors; the property's change from the full model, per seed.

One module per evaluation (its statistic, plot and stage jobs); stats.py holds
what they share.
"""

from .counterfactual import counterfactual_job, plot_counterfactual, removal_sets, removal_sets_job
from .fidelity import compare_values, compute_seconds, fidelity_job, interval_scale, plot_fidelity
from .lds import lds, lds_job, plot_lds
from .stats import (paired_subset_bootstrap, pearson, pearson_within_size, sample_subsets, spearman, subset_bootstrap,
                    subset_size, t_interval)

__all__ = ["compare_values", "compute_seconds", "counterfactual_job", "fidelity_job", "interval_scale", "lds",
           "lds_job", "paired_subset_bootstrap", "pearson", "pearson_within_size", "plot_counterfactual",
           "plot_fidelity", "plot_lds", "removal_sets", "removal_sets_job", "sample_subsets", "spearman",
           "subset_bootstrap", "subset_size", "t_interval"]
