"""Each family and attribution method declares its own config keys (a schema fragment on
its class); config.validate combines them with the main schema."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from diffcredit.attribution import METHODS, get_method
from diffcredit.config import ConfigError, deep_update, load_yaml, validate
from diffcredit.families import FAMILIES, get_family
from diffcredit.families.base import Family

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = load_yaml(REPO / "config.yaml")
TINY = deep_update(BASE, load_yaml(REPO / "configs" / "tiny.yaml"))


def error(cfg: dict, base: dict = BASE) -> str:
    with pytest.raises(ConfigError) as err:
        validate(deep_update(base, cfg), SCHEMA)
    return str(err.value)


def defaults(fragment: dict) -> dict:
    return {k: v["default"] for k, v in fragment.items() if "default" in v}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_gets_the_defaults_of_its_own_keys_and_only_those(family):
    model = validate({"model": {"family": family}}, SCHEMA)["model"]
    assert model == {"family": family, "seed": 0, **defaults(get_family(family).schema)}


def test_the_fragments_hold_the_keys_and_defaults_of_the_flat_schema():
    ddpm, ldm, sd = (get_family(n).schema for n in ("ddpm", "ldm", "sd_lora"))
    assert defaults(ddpm) == {
        "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8, "attention_levels": [],
        "attention_head_dim": None, "mid_attention": False, "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "epsilon",
        "dropout": 0, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1}
    assert defaults(ldm) == {**defaults(ddpm), "autoencoder": None, "latent_scale": "auto"}
    assert defaults(sd) == {"pretrained": None, "lora": {}, "prompt": None}
    assert set(get_family("sd_lora").generate_schema) == {"prompts", "guidance_scale", "negative_prompt", "scheduler"}
    assert defaults(get_method("trak").schema) == {"timesteps": 10, "projection_dim": "auto", "projection_seed": 0,
                                                   "lambda": 0.01, "seeds": [0], "aggregate": "sum"}
    assert defaults(get_method("pixel_similarity").schema) == {"reduce": ["mean", "max"]}


def test_every_fragment_is_a_valid_schema_and_leaves_the_common_keys_to_the_main_schema():
    from jsonschema import Draft7Validator

    main = load_yaml(SCHEMA)["properties"]
    for name in FAMILIES:
        fam = get_family(name)
        for part, fragment in (("model", fam.schema), ("generate", fam.generate_schema)):
            Draft7Validator.check_schema({"type": "object", "properties": fragment})
            assert not set(fragment) & set(main[part]["properties"]), (name, part)
    for name in METHODS:
        Draft7Validator.check_schema({"type": "object", "properties": get_method(name).schema})
        assert "method" not in get_method(name).schema


def test_an_attribution_entry_gets_its_methods_defaults_only():
    got = validate({"attributions": [{"method": "das"}, {"method": "clip_similarity", "reduce": "max"}]},
                   SCHEMA)["attributions"]
    assert got == [{"method": "das", **defaults(get_method("das").schema)},
                   {"method": "clip_similarity", "reduce": "max"}]


@pytest.mark.parametrize("cfg, needle", [
    ({"model": {"lora": {"rank": 4}}}, "model.lora is a key of families sd_lora, sdxl_lora, flux_lora, not of ddpm"),
    ({"model": {"prompt": "a cat"}}, "model.prompt is a key of families sd_lora, sdxl_lora, flux_lora, not of ddpm"),
    ({"model": {"autoencoder": "x", "latent_scale": 1.0}}, "model.autoencoder is a key of families ldm, ldm_cond, not of ddpm"),
    ({"model": {"family": "ldm", "autoencoder": "x", "pretrained": "y"}},
     "model.pretrained is a key of families sd_lora, sdxl_lora, flux_lora, not of ldm"),
    ({"model": {"family": "sd_lora", "pretrained": "y", "latent_scale": 1.0}},
     "model.latent_scale is a key of families ldm, ldm_cond, not of sd_lora"),
    ({"generate": {"guidance_scale": 5.0}}, "generate.guidance_scale is a key of families ddpm_cond, ldm_cond, sd_lora, sdxl_lora, flux_lora, not of ddpm"),
    ({"model": {"family": "ldm"}, "generate": {"scheduler": "ddim"}},
     "generate.scheduler is a key of families sd_lora, sdxl_lora, not of ldm"),
    ({"attributions": [{"method": "trak", "reduce": "max"}]},
     ("attributions.0.reduce is an option of the similarity methods pixel_similarity, clip_similarity, "
      "not of trak (a gradient method)")),
    ({"attributions": [{"method": "pixel_similarity"}, {"method": "clip_similarity", "lambda": 0.1}]},
     ("attributions.1.lambda is an option of the gradient methods trak, dtrak, relative_if, renormalized_if, das, "
      "not of clip_similarity (a similarity method)")),
])
def test_a_key_of_another_plugin_is_refused_naming_the_plugins_that_take_it(cfg, needle):
    assert needle in error(cfg)


def test_unknown_keys_and_plugins_are_refused_as_before():
    assert "model: Additional properties are not allowed ('lora_rank' was unexpected)" in error(
        {"model": {"lora_rank": 4}})
    assert "generate: Additional properties are not allowed ('cfg' was unexpected)" in error(
        {"generate": {"cfg": 2}})
    assert "attributions.0: Additional properties are not allowed ('bogus' was unexpected)" in error(
        {"attributions": [{"method": "trak", "bogus": 1}]})
    msg = error({"model": {"family": "gan"}})
    assert "model.family: unknown model.family 'gan'" in msg and "generate" not in msg
    assert "attributions.0.method: unknown attribution method 'tracin'" in error(
        {"attributions": [{"method": "tracin"}]})
    assert "attributions.0: 'method' is a required property" in error({"attributions": [{"lambda": 1}]})
    # Values inside a fragment are checked by it, with the same paths as before.
    assert "model.norm_num_groups: 0 is less than the minimum of 1" in error({"model": {"norm_num_groups": 0}})
    assert "model.lora.rank: 0 is less than the minimum of 1" in error(
        {"model": {"family": "sd_lora", "lora": {"rank": 0}}})
    assert "attributions.0.lambda: -1 is less than the minimum of 0" in error(
        {"attributions": [{"method": "trak", "lambda": -1}]})


def test_every_error_of_a_config_is_listed():
    msg = error({"threads": 0, "model": {"lora": {}, "dropout": 2},
                 "attributions": [{"method": "das", "reduce": "max", "timesteps": 0}]})
    for needle in ("threads: 0 is less than the minimum of 1", "model.lora is a key of families sd_lora, sdxl_lora, flux_lora",
                   "model.dropout: 2 is greater than the maximum of 1", "attributions.0.reduce is an option of",
                   "attributions.0.timesteps: 0 is less than the minimum of 1"):
        assert needle in msg


def test_default_family_keys_from_the_base_configs_are_dropped_under_another_family():
    # config.yaml (at the defaults) and configs/tiny.yaml (not) set ddpm keys that a later
    # --configfile cannot remove: sd_lora ignores them, warning only about changed ones.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = validate(deep_update(BASE, {"model": {"family": "sd_lora", "prompt": "x"}}), SCHEMA)["model"]
    assert model == {"family": "sd_lora", "seed": 0, "pretrained": None, "lora": {}, "prompt": "x"}
    with pytest.warns(UserWarning, match="which sd_lora ignores") as caught:
        model = validate(deep_update(TINY, {"model": {"family": "sd_lora", "prompt": "x"}}), SCHEMA)["model"]
    assert sorted(str(w.message).split(" is ")[0] for w in caught) == ["model.block_out_channels",
                                                                       "model.num_train_timesteps"]
    assert ("model.block_out_channels is a key of families ddpm, ddpm_cond, ldm, ldm_cond, which sd_lora ignores"
            in str(caught[0].message))
    assert "block_out_channels" not in model and "num_train_timesteps" not in model
    # ldm takes them; ddpm refuses the other families' keys whatever their value.
    assert validate(deep_update(TINY, {"model": {"family": "ldm"}}), SCHEMA)["model"]["block_out_channels"] == [16, 32]
    assert "model.lora is a key of families sd_lora, sdxl_lora, flux_lora, not of ddpm" in error({"model": {"lora": {}}})


def test_the_base_family_names_no_family():
    source = inspect.getsource(Family)
    assert not [name for name in FAMILIES if name in source]
    assert Family().resolve_generate({"n_images": 4}, {}, {}) == {"n_images": 4}


def test_reading_the_fragments_does_not_import_torch():
    code = ("import sys; from diffcredit.config import load_yaml, validate, deep_update; "
            f"base = load_yaml({str(REPO / 'config.yaml')!r}); "
            "cfgs = [base, deep_update(base, {'model': {'family': 'ldm'}}), "
            "deep_update(base, {'model': {'family': 'sd_lora'}, 'generate': {'prompts': ['x']}}), "
            "deep_update(base, {'attributions': [{'method': m} for m in "
            "['trak', 'dtrak', 'das', 'relative_if', 'renormalized_if', 'pixel_similarity', 'clip_similarity']]})]; "
            f"[validate(c, {str(SCHEMA)!r}) for c in cfgs]; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr
