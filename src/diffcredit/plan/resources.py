"""What a stage's jobs ask the scheduler for: threads, memory, a GPU, wall time.

The stage record says how (its `threads`, `memory`, `gpu`, `runtime`); the config
and the plug-ins say how much: the model's size from its family, an extractor's
needs from the extractor.
"""

from __future__ import annotations

from ..stages import get as get_stage


class Resources:
    def threads_of(self, stage: str) -> int:
        which = get_stage(stage).threads
        return self.cfg[which] if which else 1

    def resources(self, stage: str) -> dict:
        """mem_mb (None: Snakemake's default) and gpu of a stage's jobs."""
        from ..devices import visible_gpus
        from ..extractors import get_extractor

        record = get_stage(stage)
        gpu = int(record.gpu and (self.device == "cuda" or (self.device == "auto" and visible_gpus() > 0)))
        mem = None
        if record.memory == "base":
            mem = 1000
        elif record.memory == "model":
            # Weights; gradients, Adam moments, EMA and checkpoint copies of what trains; activations.
            mem = 1000 + 4 * (self.n_parameters + 5 * self.n_trainable) // 2**20 + 1500
        elif record.memory == "gradients":
            mem = 1000 + 4 * self.n_parameters // 2**20 + 2048 + 1500
        elif record.memory == "extractors":
            mem = 1000 + max(get_extractor(n).memory_mb for n in self.extractor_specs)
        return {"mem_mb": None if mem is None else int(mem), "gpu": gpu}
