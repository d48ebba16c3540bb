"""Tiny models saved in the on-disk layout of the public checkpoints, for the full presets' tests.

- CogVideoX-2b / 5b and Wan2.1-T2V-1.3B-Diffusers: a diffusers pipeline directory (`save_pretrained`) with
  `model_index.json` naming the public classes (T5 / UMT5 text encoder, a Unigram T5 tokenizer, CogVideoXDDIMScheduler /
  UniPCMultistepScheduler with the public scheduler settings), sharded text encoder weights with their
  `model.safetensors.index.json` (as the public text encoders are), and for the 5B a sharded transformer with
  rotary position embeddings (the 5B's `use_rotary_positional_embeddings`).
- Qwen2.5-VL-7B-Instruct: a transformers directory: config.json, generation_config.json, sharded
  model-0000i-of-0000n.safetensors + model.safetensors.index.json, tokenizer.json + tokenizer_config.json,
  preprocessor_config.json. The tiny critic is first taught to answer "Answer: A" (answer-only, a few steps), so
  the loop gets confident judgments and trains the generator; a random tiny critic abstains on everything.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from dualipo.config import build_config

TINY_GENERATOR = ["generator.path=", "generator.arch.num_layers=1", "generator.arch.num_heads=2",
                  "generator.arch.head_dim=16", "generator.arch.ffn_dim=32", "generator.arch.time_dim=16",
                  "generator.arch.latent_channels=4", "generator.arch.vae_channels=[4, 8, 8]",
                  "generator.arch.text_dim=16", "generator.arch.text_layers=1",
                  "generator.arch.text_heads=2", "generator.dtype=float32",
                  "generator.device=cpu", "world.height=32", "world.width=32", "world.num_frames=9"]
SHARD = "8KB"  # small enough that the tiny text encoders (and the 5B's transformer) are sharded


def _reshard(model, folder: Path, single: str) -> None:
    """Replace `folder/single` by shards and their `.index.json`, as the public checkpoints are stored."""
    (folder / single).unlink()
    model.save_pretrained(folder, safe_serialization=True, max_shard_size=SHARD)
    assert (folder / f"{single}.index.json").is_file() and not (folder / single).exists()


def t5_tokenizer(max_len: int):
    """A tiny T5 tokenizer of the public kind (a Unigram model with <pad>, </s>, <unk>), trained offline on the
    shapes world's prompts."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    from dualipo.config import WorldConfig
    from dualipo.toy.world import prompt_pools

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(prompt_pools(WorldConfig())[0], trainers.UnigramTrainer(
        vocab_size=100, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_len)


def save_tiny_wan(root: Path) -> Path:
    """Wan2.1-T2V-1.3B-Diffusers layout: UMT5 text encoder, UniPC flow scheduler (shift 3.0 at 480p)."""
    from diffusers import UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    from dualipo.generators import build_generator

    cfg = build_config("full-wan-1.3b", overrides=TINY_GENERATOR)
    pipe = build_generator(cfg).pipe
    tokenizer = t5_tokenizer(cfg.generator.text_max_len)
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                          num_heads=2, relative_attention_num_buckets=8))
    pipe.register_modules(tokenizer=tokenizer, text_encoder=encoder.eval(),
                          scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                            num_train_timesteps=1000, flow_shift=3.0))
    pipe.save_pretrained(root, safe_serialization=True)
    _reshard(pipe.text_encoder, root / "text_encoder", "model.safetensors")
    return root


def save_tiny_cogvideox(root: Path, five_b: bool = False) -> Path:
    """CogVideoX-2b / 5b layout: T5 text encoder, CogVideoXDDIMScheduler (v-prediction, zero-SNR, trailing); the
    5B's transformer uses rotary position embeddings and is sharded."""
    from diffusers import CogVideoXTransformer3DModel

    from dualipo.generators import build_generator
    from dualipo.generators.text import build_text_encoder

    cfg = build_config("full-cogvideox-5b" if five_b else "full-cogvideox-2b", overrides=TINY_GENERATOR)
    pipe = build_generator(cfg).pipe
    tokenizer = t5_tokenizer(cfg.generator.text_max_len)
    pipe.register_modules(tokenizer=tokenizer, text_encoder=build_text_encoder(cfg.generator.arch, len(tokenizer)))
    if five_b:
        t = pipe.transformer.config
        torch.manual_seed(0)
        pipe.register_modules(transformer=CogVideoXTransformer3DModel(**{
            **{k: t[k] for k in ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                                 "time_embed_dim", "text_embed_dim", "num_layers", "sample_width", "sample_height",
                                 "sample_frames", "patch_size", "temporal_compression_ratio",
                                 "max_text_seq_length")},
            "use_rotary_positional_embeddings": True}))
    pipe.save_pretrained(root, safe_serialization=True)
    _reshard(pipe.text_encoder, root / "text_encoder", "model.safetensors")
    if five_b:
        _reshard(pipe.transformer, root / "transformer", "diffusion_pytorch_model.safetensors")
    return root


TINY_CRITIC = ["critic.path=", "critic.arch=qwen2_5_vl", "critic.dtype=float32", "critic.device=cpu",
               "critic.vocab_size=300", "critic.hidden_size=32", "critic.intermediate_size=64", "critic.num_layers=1",
               "critic.num_heads=2", "critic.num_kv_heads=1", "critic.mrope_section=[2, 3, 3]",
               "critic.vision_depth=1", "critic.vision_embed_dim=32", "critic.vision_heads=2", "critic.num_frames=4",
               "critic.image_size=32", "world.height=32", "world.width=32", "world.num_frames=9"]
PREPROCESSOR = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
                "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "do_convert_rgb": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "min_pixels": 16 * 16, "max_pixels": 448 * 448}


def save_tiny_critic(root: Path, max_steps: int = 400) -> Path:
    """A tiny Qwen2.5-VL critic taught to answer "Answer: A" to any pairwise answer-only question, saved in the
    Qwen2.5-VL-7B-Instruct layout. Trained until its loss is under 0.01 (about 50 steps), not for a fixed number
    of steps: a fixed count left it answering "AnswerAnse A" on another CPU, and the loop then had no verdict."""
    from dualipo.critics.prompts import pair_prompt, target_text
    from dualipo.critics.qwen_vl import QwenVLCritic, build_random
    from dualipo.toy.world import render_prompt

    cfg = build_config("full-wan-1.3b", overrides=TINY_CRITIC)
    model, tok = build_random(cfg.critic)
    critic = QwenVLCritic(model, tok, cfg.critic, cfg.judging)
    prompt = "a red circle moving left on a black background"
    videos = [critic.visual(render_prompt(prompt, s, cfg.world)) for s in range(3)]
    texts = [pair_prompt(prompt, d, chain_of_thought=False) for d in ("alignment", "motion")]
    batch = critic.inputs(texts, [videos[:2], videos[1:]], [target_text("", "A", False)] * 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(max_steps):
        loss = model(**batch).loss
        if loss.item() < 0.01:
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
    else:
        raise RuntimeError(f"the tiny critic did not learn its answer in {max_steps} steps (loss {loss.item():.3f})")
    model.eval()
    model.save_pretrained(root, safe_serialization=True, max_shard_size="80KB")
    tok.save_pretrained(root)
    (root / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR, "patch_size": cfg.critic.patch_size,
                                                               "temporal_patch_size": 2, "merge_size": 2}, indent=2))
    return root
