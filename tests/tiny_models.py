"""Tiny random models of the real pretrained classes, saved as the directories users
point the config at (nothing is downloaded), and small image folders for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def vq_model(folder: Path, seed: int = 0) -> Path:
    """A diffusers VQModel: 16x16 RGB images <-> 3x8x8 latents."""
    import torch
    from diffusers import VQModel

    torch.manual_seed(seed)
    VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
            latent_channels=3, num_vq_embeddings=32, vq_embed_dim=3, norm_num_groups=32,
            sample_size=16).save_pretrained(folder)
    return folder


def kl_autoencoder(folder: Path, seed: int = 0, scaling_factor: float = 0.5) -> Path:
    """A diffusers AutoencoderKL: 16x16 RGB images <-> 4x8x8 latents."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=32, sample_size=16, scaling_factor=scaling_factor).save_pretrained(folder)
    return folder


def colour_folders(root: Path, n_contributors: int = 3, per: int = 12, size: int = 16, seed: int = 0) -> Path:
    """root/<contributor>/*.png: each contributor's images a noisy version of its own colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(n_contributors):
        folder = root / f"c{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, 3)
        for i in range(per):
            img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


def clip_tokenizer(max_length: int = 16):
    """A byte-level CLIPTokenizer built in memory (no merges, 514 tokens)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in ByteLevel.alphabet():
        for tok in (ch, ch + "</w>"):
            vocab.setdefault(tok, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def sd_pipeline(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline directory: 32x32 images, 4x16x16 latents."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32))
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, sample_size=32)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              num_train_timesteps=1000, steps_offset=1, clip_sample=False)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    return folder


def metadata_folder(root: Path, contributors: dict[str, int], size: int = 32, seed: int = 0,
                    captions: bool = True, fmt: str = "csv") -> Path:
    """root/images/*.png listed in root/metadata.<fmt> with `artist` (and `text`) columns."""
    import csv
    import json

    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for who, n in contributors.items():
        base = rng.integers(0, 256, 3)
        for i in range(n):
            name = f"images/{who}-{i}.png"
            img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name)
            rows.append({"file_name": name, "artist": who, **({"text": f"a painting by {who}"} if captions else {})})
    if fmt == "csv":
        with open(root / "metadata.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def clip_model(folder: Path, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> Path:
    """A transformers CLIPModel (vision 32x32, patch 8) with its tokenizer-free config."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=8, projection_dim=projection_dim)
    text = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, projection_dim=projection_dim)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)).save_pretrained(folder)
    return folder


def blip_model(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A transformers BlipForQuestionAnswering (vision 32x32, patch 8)."""
    import torch
    from transformers import BlipConfig, BlipForQuestionAnswering

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=8)
    text = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=32, encoder_hidden_size=32)
    BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    return folder


def aesthetic_head(path: Path, width: int = 16, seed: int = 0) -> Path:
    """A random linear head nn.Linear(width, 1) saved as LAION's file is (a state dict)."""
    import torch

    torch.manual_seed(seed)
    torch.save(torch.nn.Linear(width, 1).state_dict(), path)
    return path


def t5_tokenizer(max_length: int = 16):
    """A unigram T5Tokenizer built in memory: a few words, single characters, <unk> for
    the rest."""
    import string

    from transformers import T5Tokenizer

    words = ["a", "photo", "painting", "of", "cat", "dog", "red", "dress", "shoe"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    vocab += [("\u2581" + w, -1.0) for w in words]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def flux_pipeline(folder: Path, seed: int = 0, guidance: bool = True) -> Path:
    """A FluxPipeline directory: a CLIP and a T5 text encoder (T5 width 24, pooled CLIP
    32), a shifted and scaled VAE, a one-block FluxTransformer2DModel on 4x16x16 latents
    packed to 64 tokens of 16; 32x32 images."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer_2 = t5_tokenizer()
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=24, d_kv=8, d_ff=37, num_layers=2,
                                 num_heads=3, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                 decoder_start_token_id=0))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=16, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1, projection_dim=32, hidden_act="gelu"))
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
                                         pooled_projection_dim=32, guidance_embeds=guidance, axes_dims_rope=(4, 6, 6))
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, sample_size=32,
                        scaling_factor=1.5035, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tokenizer(), text_encoder_2=t5,
                 tokenizer_2=tokenizer_2, transformer=transformer).save_pretrained(folder)
    return folder


def sdxl_pipeline(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionXLPipeline directory: two CLIP text encoders (the second with a
    projection, whose pooled embedding and the size ids condition the UNet), 32x32
    images, 4x16x16 latents."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    text = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32,
                hidden_act="gelu")
    encoder = CLIPTextModel(CLIPTextConfig(**text))
    encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text))
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                                attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=32 + 6 * 8, transformer_layers_per_block=1)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, sample_size=32,
                        scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    StableDiffusionXLPipeline(vae=vae, text_encoder=encoder, text_encoder_2=encoder_2, tokenizer=clip_tokenizer(),
                              tokenizer_2=clip_tokenizer(), unet=unet, scheduler=scheduler,
                              force_zeros_for_empty_prompt=True).save_pretrained(folder)
    return folder
