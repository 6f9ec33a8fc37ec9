"""diffcredit: credit data contributors of diffusion models with Shapley values.

The library holds all logic; the Snakemake workflow in the repository root only
wires its stages together. Nothing here imports Snakemake.
"""

__version__ = "0.1.0"
