"""Model families behind a registry.

A family is one module with one `Family` subclass; adding one is that module plus
a line in FAMILIES. Its `model` keys (and extra `generate` keys) are its class's
`schema` (and `generate_schema`), which the config's validation reads through
`registry`. Modules are imported on first use and import torch only inside
functions, so parsing the workflow does not import torch.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Family

# name -> "module:class", imported lazily.
FAMILIES = {
    "ddpm": "diffcredit.families.ddpm:DDPM",
    "ddpm_cond": "diffcredit.families.ddpm_cond:DDPMCond",
    "ldm": "diffcredit.families.ldm:LDM",
    "ldm_cond": "diffcredit.families.ldm_cond:LDMCond",
    "sd_lora": "diffcredit.families.sd_lora:SDLoRA",
    "sdxl_lora": "diffcredit.families.sdxl_lora:SDXLLoRA",
    "flux_lora": "diffcredit.families.flux_lora:FluxLoRA",
}

_registry = registry = Registry("model.family", FAMILIES)


def get_family(name: str) -> Family:
    """The family called `name`."""
    return _registry.get(name)
