"""shapley_estimate: values, CIs, diagnostics and plots for one estimator."""

import logging

from diffcredit.report import estimate_values

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
spec = snakemake.params.spec  # noqa: F821
scores = {
    p: {
        "empty": snakemake.input[f"empty_{p}"],  # noqa: F821
        "full": snakemake.input[f"full_{p}"],  # noqa: F821
        "rows": list(snakemake.input[f"rows_{p}"]),  # noqa: F821
    }
    for p in spec["properties"]
}
estimate_values(spec, snakemake.input.design, scores, snakemake.output[0])  # noqa: F821
