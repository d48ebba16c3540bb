"""Generator backends (Wan, CogVideoX) on tiny real diffusers models built from config; no mocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dualipo.cli import main
from dualipo.config import build_config
from dualipo.generators import build_generator, generator_dir, shipped_path
from dualipo.generators.base import fixed_batches
from dualipo.toy.world import prompt_pools, render_prompt

BACKENDS = ("wan", "cogvideox")
PROMPTS = ["a red circle moving left on a black background", "two blue squares growing on a gray background"]


def _cfg(backend: str, *extra: str):
    return build_config("tiny", overrides=[f"generator.backend={backend}", *extra])


def _sample(gen, cfg, prompts, seeds):
    w = cfg.world
    return gen.sample(prompts, seeds, num_frames=w.num_frames, height=w.height, width=w.width, progress=False)


def _batch(gen, cfg, n=2):
    """Latents, prompt embeddings, and one shared (noise, timestep) draw for a tiny batch."""
    train, _ = prompt_pools(cfg.world)
    videos = [render_prompt(p, i, cfg.world) for i, p in enumerate(train[:n])]
    lat = gen.encode_videos(videos)
    emb = gen.encode_prompts(train[:n])
    noise, t = gen.draw_noise_and_timesteps(lat, torch.Generator().manual_seed(0))
    return lat, emb, t, noise


def _perturb_lora(gen, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gen.lora_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.fixture
def threads(request):
    """Run the test body under `request.param` torch threads, then restore the default."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _max_level_diff(a, b) -> int:
    return int(np.abs(a.frames.astype(int) - b.frames.astype(int)).max())


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_shapes_and_reproducibility_contract(backend, threads):
    """The contract in the `Generator` docstring: bit-identical for the same items and batch size; within 2 uint8
    levels for the same (prompt, seed) at another position, in another batch or under another thread count."""
    cfg = _cfg(backend)
    gen = build_generator(cfg)
    items = ([PROMPTS[0], PROMPTS[1], PROMPTS[0]], [0, 1, 0])
    videos = _sample(gen, cfg, *items)
    assert len(videos) == 3
    assert videos[0].frames.shape == (cfg.world.num_frames, cfg.world.height, cfg.world.width, 3)
    assert videos[0].frames.dtype == np.uint8 and videos[0].fps == cfg.world.fps
    for a, b in zip(videos, _sample(gen, cfg, *items)):  # the same call again: exact
        np.testing.assert_array_equal(a.frames, b.frames)
    assert _max_level_diff(videos[0], videos[2]) <= 2  # same item, another position in the batch
    alone = _sample(gen, cfg, [PROMPTS[0]], [0])[0]  # another batch composition
    assert _max_level_diff(alone, videos[0]) <= 2
    torch.set_num_threads(3 - threads)  # another thread count
    assert _max_level_diff(_sample(gen, cfg, [PROMPTS[0]], [0])[0], alone) <= 2
    other = _sample(gen, cfg, [PROMPTS[0]], [5])[0]
    assert _max_level_diff(other, videos[0]) > 2  # another seed is another video, not rounding
    with pytest.raises(ValueError, match="one seed per video"):
        _sample(gen, cfg, PROMPTS, [0])


def test_fixed_batches_resume_at_a_boundary_rebuilds_the_same_batches():
    assert [list(b) for b in fixed_batches(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert fixed_batches(0, 3) == []
    with pytest.raises(ValueError, match="batch_size"):
        fixed_batches(4, 0)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
def test_batches_resumed_at_a_boundary_are_bit_identical(threads):
    """What the round loop relies on: sampling items [B, n) after a crash gives exactly the uninterrupted videos."""
    cfg = _cfg("wan")
    gen = build_generator(cfg)
    prompts, seeds = [PROMPTS[i % 2] for i in range(5)], list(range(5))
    w = cfg.world
    kw = dict(num_frames=w.num_frames, height=w.height, width=w.width, batch_size=2, progress=False)
    full = gen.sample(prompts, seeds, **kw)
    resumed = gen.sample(prompts[2:], seeds[2:], **kw)
    for a, b in zip(full[2:], resumed):
        np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_round_trip(backend, tmp_path):
    cfg = _cfg(backend)
    gen = build_generator(cfg)
    gen.save_pretrained(tmp_path / "pipe")
    loaded = build_generator(_cfg(backend, f"generator.path={tmp_path / 'pipe'}"))
    assert type(loaded) is type(gen)
    lat, emb, t, noise = _batch(gen, cfg)
    torch.testing.assert_close(loaded.denoising_errors(lat, emb, t, noise), gen.denoising_errors(lat, emb, t, noise),
                               rtol=0, atol=0)
    a = _sample(gen, cfg, [PROMPTS[0]], [3])[0]
    b = _sample(loaded, cfg, [PROMPTS[0]], [3])[0]
    np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_denoising_errors_per_sample_and_pair_sharing(backend):
    cfg = _cfg(backend)
    gen = build_generator(cfg)
    lat, emb, t, noise = _batch(gen, cfg)
    assert lat.ndim == 5 and lat.shape[1] == cfg.generator.arch.latent_channels  # latents_BCFHW
    pair = gen.denoising_errors(torch.cat([lat[:1], lat[:1]]), torch.cat([emb[:1], emb[:1]]),
                                torch.cat([t[:1], t[:1]]), torch.cat([noise[:1], noise[:1]]))
    assert pair.shape == (2,) and torch.isfinite(pair).all()
    torch.testing.assert_close(pair[0], pair[1])
    errors = gen.denoising_errors(lat, emb, t, noise)
    errors.sum().backward()  # gradients reach the transformer
    assert any(p.grad is not None for p in gen.transformer.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_lora_round_trip_merge_and_reference_mode(backend, tmp_path):
    cfg = _cfg(backend)
    gen = build_generator(cfg)
    lat, emb, t, noise = _batch(gen, cfg)
    with torch.no_grad():
        base = gen.denoising_errors(lat, emb, t, noise)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        with gen.reference_mode():
            pass
    gen.add_lora(seed=0)
    _perturb_lora(gen)
    with torch.no_grad():
        policy = gen.denoising_errors(lat, emb, t, noise)
        assert not torch.allclose(policy, base)
        with gen.reference_mode():
            torch.testing.assert_close(gen.denoising_errors(lat, emb, t, noise), base, rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="boom"):
            with gen.reference_mode():
                raise RuntimeError("boom")
        torch.testing.assert_close(gen.denoising_errors(lat, emb, t, noise), policy, rtol=0, atol=0)
    n_lora = len(gen.lora_parameters())
    assert n_lora and all(p.requires_grad for p in gen.lora_parameters())  # trainable again after the reference

    path = gen.save_lora(tmp_path / "lora")
    assert path.suffix == ".safetensors"
    other = build_generator(cfg)
    other.load_lora(tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(other.denoising_errors(lat, emb, t, noise), policy, rtol=0, atol=0)
        with other.reference_mode():  # finds the loaded adapter's layers; merge_lora must forget them
            torch.testing.assert_close(other.denoising_errors(lat, emb, t, noise), base, rtol=0, atol=0)
        other.merge_lora()
        torch.testing.assert_close(other.denoising_errors(lat, emb, t, noise), policy, rtol=1e-5, atol=1e-6)
    assert not other.lora_parameters()
    other.add_lora(seed=1)  # a new adapter after a merge: the reference is the merged model
    _perturb_lora(other)
    with torch.no_grad():
        assert not torch.allclose(other.denoising_errors(lat, emb, t, noise), policy)
        with other.reference_mode():
            torch.testing.assert_close(other.denoising_errors(lat, emb, t, noise), policy, rtol=1e-5, atol=1e-6)
    assert len(other.lora_parameters()) == n_lora
    with pytest.raises(ValueError, match="no LoRA file"):
        other.load_lora(tmp_path / "missing")


def test_config_errors():
    with pytest.raises(ValueError, match="generator.path=.*no such directory"):
        build_generator(_cfg("wan", "generator.path=/nonexistent/dir"))
    with pytest.raises(ValueError, match="vae_channels"):
        build_generator(_cfg("wan", "generator.arch.vae_channels=[4, 8]"))


def test_sample_command_writes_videos_and_scores(tmp_path):
    assert main(["sample", "--preset", "tiny", "--out", str(tmp_path), "--num-prompts", "1", "--seeds", "0", "1"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all((tmp_path / r["file"]).is_file() and 0 <= r["oracle"]["overall"] <= 1 for r in rows)


@pytest.mark.skipif(not (shipped_path() / "model_index.json").is_file(), reason="shipped generator not built yet")
def test_shipped_small_generator_loads_and_samples():
    cfg = build_config("small", overrides=["generator.num_inference_steps=2"])
    gen = build_generator(cfg)
    assert next(gen.transformer.parameters()).dtype == torch.float32
    video = _sample(gen, cfg, [prompt_pools(cfg.world)[1][0]], [0])[0]
    assert video.frames.shape == (cfg.world.num_frames, cfg.world.height, cfg.world.width, 3)


def test_generator_dir_checks_without_loading(tmp_path):
    """What `dualipo run` checks before writing anything: the shipped pipeline, a saved one, none for a random
    init; the shipped Wan generator under the CogVideoX backend and a pipeline of the other backend are errors."""
    assert generator_dir(build_config("small")) == shipped_path()
    assert generator_dir(_cfg("wan")) is None
    with pytest.raises(ValueError, match="'shipped' is the Wan small generator.*cogvideox"):
        generator_dir(build_config("small", overrides=["generator.backend=cogvideox"]))
    build_generator(_cfg("wan")).save_pretrained(tmp_path / "wan")
    assert generator_dir(_cfg("wan", f"generator.path={tmp_path / 'wan'}")) == tmp_path / "wan"
    with pytest.raises(ValueError, match="names 'WanPipeline' but generator.backend=cogvideox"):
        generator_dir(_cfg("cogvideox", f"generator.path={tmp_path / 'wan'}"))


def test_lora_trains_in_float32_on_a_bf16_transformer_added_or_loaded(tmp_path):
    cfg = _cfg("wan", "generator.dtype=bfloat16")
    gen = build_generator(cfg)
    gen.add_lora(seed=0)
    assert {p.dtype for p in gen.lora_parameters()} == {torch.float32}
    assert next(p for n, p in gen.transformer.named_parameters() if "lora_" not in n).dtype == torch.bfloat16
    gen.save_lora(tmp_path / "lora")
    other = build_generator(cfg)
    other.load_lora(tmp_path / "lora")  # a later round continues a saved adapter: still float32
    loaded = [p for n, p in other.transformer.named_parameters() if "lora_" in n]
    assert loaded and {p.dtype for p in loaded} == {torch.float32}
