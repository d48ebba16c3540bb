"""The full presets (CogVideoX-2B / 5B, Wan2.1-T2V-1.3B with a Qwen2.5-VL critic): they resolve and validate, a
wrong checkpoint directory is an error naming the missing file, and each preset's code path runs one round through
`dualipo run` on tiny models saved in the public checkpoints' layout (tests/full_layout_util.py), with every memory
switch on: bf16, gradient checkpointing, VAE slicing and tiling, the latent cache on disk with the VAE and text
encoder on CPU, and the critic / generator offload."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from dualipo.cli import main
from dualipo.config import build_config, to_dict
from dualipo.model_dirs import LayoutError, check_diffusers_dir, check_transformers_dir
from full_layout_util import TINY_CRITIC, save_tiny_cogvideox, save_tiny_critic, save_tiny_wan
from rounds_util import assert_complete, query

FULL = ("full-cogvideox-2b", "full-cogvideox-5b", "full-wan-1.3b")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """The full presets train in bf16: a process (one CLI call) sets accelerate's mixed precision once, so tests
    that run the CLI in this process after other tests start from a fresh accelerate state, and leave one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_presets_resolve_with_the_paper_settings_and_memory_features():
    for name in FULL:
        c = build_config(name)
        assert (c.sampling.videos_per_prompt, c.pairs.strategy, c.rounds.num_rounds) == (8, "best_vs_worst", 3)
        assert (c.critic.arch, c.critic.path, c.critic.dtype) == ("qwen2_5_vl", "models/Qwen2.5-VL-7B-Instruct",
                                                                   "bfloat16")
        assert c.generator.dtype == "bfloat16" and c.train.mixed_precision == "bf16"
        assert c.generator.vae_slicing and c.generator.vae_tiling and c.train.gradient_checkpointing
        assert c.train.frozen_on_cpu and c.rounds.offload_models
        assert c.world.num_train_prompts >= c.rounds.num_rounds * c.sampling.prompts_per_round
    cog = build_config("full-cogvideox-2b")
    assert (cog.world.num_frames, cog.world.height, cog.world.width) == (49, 480, 720)
    assert (cog.generator.backend, cog.generator.path, cog.generator.arch.prediction_type) == \
        ("cogvideox", "models/CogVideoX-2b", "v_prediction")
    assert build_config("full-cogvideox-5b").generator.path == "models/CogVideoX-5b"
    wan = build_config("full-wan-1.3b")
    assert (wan.world.num_frames, wan.world.height, wan.world.width, wan.world.fps) == (81, 480, 832, 16.0)
    assert (wan.generator.backend, wan.generator.path) == ("wan", "models/Wan2.1-T2V-1.3B-Diffusers")
    assert to_dict(build_config("full")) == to_dict(cog)  # the old name stays an alias
    tiny = build_config("tiny")  # the small presets keep every memory switch off
    assert not (tiny.generator.vae_tiling or tiny.train.gradient_checkpointing or tiny.rounds.offload_models)


def test_full_preset_config_command(capsys):
    assert main(["config", "--preset", "full-wan-1.3b", "critic.path=/ckpt/qwen2-vl", "critic.arch=qwen2_vl"]) == 0
    out = capsys.readouterr().out
    assert "Wan2.1-T2V-1.3B-Diffusers" in out and "/ckpt/qwen2-vl" in out


# ------------------------------------------------------------------------------------------------ layout errors

@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {"wan": save_tiny_wan(root / "wan"), "cogvideox-2b": save_tiny_cogvideox(root / "cog2b"),
            "cogvideox-5b": save_tiny_cogvideox(root / "cog5b", five_b=True),
            "critic": save_tiny_critic(root / "critic")}


def _broken(src: Path, dst: Path, remove: str) -> Path:
    shutil.copytree(src, dst)
    target = dst / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return dst


@pytest.mark.parametrize("which, remove, message", [
    ("wan", "model_index.json", "missing {d}/model_index.json"),
    ("wan", "transformer/diffusion_pytorch_model.safetensors", "missing {d}/transformer/diffusion_pytorch_model"
                                                               ".safetensors (or diffusion_pytorch_model"),
    ("wan", "text_encoder/model-00002-of-00002.safetensors", "missing {d}/text_encoder/model-00002-of-00002"
                                                             ".safetensors (listed in model.safetensors.index.json)"),
    ("cogvideox-5b", "transformer/diffusion_pytorch_model-00003-of-00010.safetensors", "00003-of-00010"),
    ("cogvideox-2b", "scheduler", "missing {d}/scheduler/scheduler_config.json"),
    ("cogvideox-2b", "tokenizer/tokenizer.json", "missing the tokenizer's vocabulary in {d}/tokenizer"),
    ("cogvideox-2b", "vae/config.json", "missing {d}/vae/config.json"),
])
def test_generator_layout_errors_name_the_file(layouts, tmp_path, which, remove, message):
    d = _broken(layouts[which], tmp_path / which, remove)
    with pytest.raises(LayoutError) as e:
        check_diffusers_dir(d, "generator.path", which.split("-")[0])
    assert message.format(d=d) in str(e.value) and "Expected layout: model_index.json" in str(e.value)


@pytest.mark.parametrize("remove, message", [
    ("config.json", "missing {d}/config.json"),
    ("SECOND_SHARD", "missing {d}/SECOND_SHARD (listed in model.safetensors.index.json)"),
    ("model.safetensors.index.json", "missing {d}/model.safetensors (or model.safetensors.index.json + shards)"),
    ("tokenizer.json", "missing the tokenizer's vocabulary in {d} (tokenizer.json or vocab.json + merges.txt)"),
    ("tokenizer_config.json", "missing {d}/tokenizer_config.json"),
])
def test_critic_layout_errors_name_the_file(layouts, tmp_path, remove, message):
    second = sorted(p.name for p in layouts["critic"].glob("model-*.safetensors"))[1]
    remove, message = remove.replace("SECOND_SHARD", second), message.replace("SECOND_SHARD", second)
    d = _broken(layouts["critic"], tmp_path / "critic", remove)
    with pytest.raises(LayoutError) as e:
        check_transformers_dir(d)
    assert message.format(d=d) in str(e.value) and "Expected layout: config.json" in str(e.value)


def test_other_layout_errors(layouts, tmp_path, capsys):
    with pytest.raises(LayoutError, match="model_index.json names 'WanPipeline' but generator.backend=cogvideox"):
        check_diffusers_dir(layouts["wan"], "generator.path", "cogvideox")
    bin_only = _broken(layouts["wan"], tmp_path / "bin", "vae/diffusion_pytorch_model.safetensors")
    (bin_only / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(LayoutError, match=r"found only diffusion_pytorch_model.bin \(weights are read as "
                                          r"safetensors only\)"):
        check_diffusers_dir(bin_only)
    for d in layouts.values():  # the complete directories pass
        (check_transformers_dir if (d / "config.json").is_file() else check_diffusers_dir)(d)
    # through the CLI: the run fails before anything is written, naming the file
    broken = _broken(layouts["critic"], tmp_path / "critic", "tokenizer_config.json")
    rc = main(["run", "--preset", "full-wan-1.3b", f"generator.path={layouts['wan']}", f"critic.path={broken}",
               "--out", str(tmp_path / "run")])
    assert rc == 2 and f"missing {broken}/tokenizer_config.json" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ one round each

SHRINK = ["world.height=32", "world.width=32", "world.num_frames=9", "world.fps=8", "world.num_train_prompts=4",
          "world.num_eval_prompts=2", "generator.num_inference_steps=2", "generator.vae_tile=16",
          "sampling.prompts_per_round=2", "sampling.videos_per_prompt=2", "sampling.batch_size=2",
          "judging.num_votes=1", "judging.chain_of_thought=false", "judging.both_orders=false",
          "critic.max_new_tokens=8", *[o for o in TINY_CRITIC if o.split("=")[0] in ("critic.num_frames",
                                                                                   "critic.image_size")],
          "train.num_steps=1", "train.grad_accum=1", "train.warmup_steps=0", "train.checkpoint_every=1",
          "critic_refine.steps=1", "critic_refine.batch_size=2", "critic_refine.seed_pairs=4",
          "critic_refine.probe_pairs=0", "critic_refine.warmup_steps=0", "eval.num_prompts=1", "eval.seeds=[0]",
          "rounds.num_rounds=1", "rounds.threads=1"]


class Spy:
    """Counts calls of a few functions the memory features go through."""

    def __init__(self, monkeypatch):
        import torch.utils.checkpoint as ckpt
        from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan

        from dualipo.loop import placement

        self.calls: dict[str, int] = {}
        self.moves: list[tuple[str, str]] = []
        self.wrap(monkeypatch, ckpt, "checkpoint", "checkpoint")
        for cls in (AutoencoderKLWan, AutoencoderKLCogVideoX):
            self.wrap(monkeypatch, cls, "tiled_encode", "tiled_encode")
            self.wrap(monkeypatch, cls, "tiled_decode", "tiled_decode")
        for name in ("park_critic", "use_critic", "release_generator"):
            self.wrap(monkeypatch, placement, name, name)

    def wrap(self, monkeypatch, owner, attr, key):
        fn = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            self.calls[key] = self.calls.get(key, 0) + 1
            return fn(*args, **kwargs)
        monkeypatch.setattr(owner, attr, wrapper)


@pytest.mark.parametrize("preset", FULL)
def test_one_round_of_each_full_preset_through_the_cli(layouts, tmp_path, monkeypatch, preset):
    generator = layouts[{"full-wan-1.3b": "wan", "full-cogvideox-2b": "cogvideox-2b",
                         "full-cogvideox-5b": "cogvideox-5b"}[preset]]
    spy = Spy(monkeypatch)
    run = tmp_path / "run"
    torch_threads = torch.get_num_threads()
    try:
        assert main(["run", "--preset", preset, "--out", str(run), f"generator.path={generator}",
                     f"critic.path={layouts['critic']}", *SHRINK]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    assert_complete(run, rounds=1, eval_videos=1, prompts=2, per_prompt=2)
    assert query(run, "SELECT value FROM meta WHERE key = 'finished'")
    assert query(run, "SELECT status FROM stages WHERE round = 1 AND stage = 'train'") == [("done",)]
    assert query(run, "SELECT count(*) FROM pairs")[0][0] == 2  # best vs worst: one pair per prompt
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["generator"]["dtype"] == "bfloat16" and cfg["train"]["gradient_checkpointing"]
    assert (run / "round_01" / "train" / "latents.safetensors").is_file()  # cached to disk before training
    assert (run / "round_01" / "generator_lora.safetensors").is_file()
    steps = [json.loads(x) for x in (run / "round_01" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 1 and abs(steps[0]["loss"] - 0.6931) < 0.01  # policy == reference at step 0: log 2
    assert spy.calls.get("checkpoint", 0) > 0, "gradient checkpointing was not used"
    assert spy.calls.get("tiled_encode", 0) > 0 and spy.calls.get("tiled_decode", 0) > 0
    assert spy.calls.get("park_critic", 0) >= 4 and spy.calls.get("use_critic", 0) >= 2
    assert spy.calls.get("release_generator", 0) == 1  # before the round's critic win rate


@pytest.mark.parametrize("backend", ["wan", "cogvideox"])
def test_gradient_checkpointing_gives_the_same_dpo_gradients_with_lora(backend):
    """Checkpointed blocks recompute exactly what they stored: the same Diffusion-DPO loss and LoRA gradients,
    with the reference pass (adapters disabled, no gradients) unchanged."""
    from dualipo.generators import build_generator
    from dualipo.losses import diffusion_dpo_loss

    cfg = build_config("tiny", overrides=[f"generator.backend={backend}"])
    results = []
    for checkpointing in (False, True):
        gen = build_generator(cfg)
        gen.add_lora(seed=0)
        torch.manual_seed(1)
        for p in gen.lora_parameters():  # non-zero B so the policy differs from the reference
            p.data.normal_(0, 0.05)
        if checkpointing:
            gen.transformer.enable_gradient_checkpointing()
        g = torch.Generator().manual_seed(0)
        z = torch.randn(2, 4, 3, 8, 8, generator=g)
        emb = gen.encode_prompts(["a red circle moving left on a black background"] * 2)
        noise, t = gen.draw_noise_and_timesteps(z, g)
        t = torch.cat([t[:1], t[:1]])
        noise = torch.cat([noise[:1], noise[:1]])
        err = gen.denoising_errors(z, emb, t, noise)
        with torch.no_grad(), gen.reference_mode():
            ref = gen.denoising_errors(z, emb, t, noise)
        loss, _ = diffusion_dpo_loss(err[:1], err[1:], ref[:1], ref[1:], 500.0)
        loss.backward()
        results.append((float(loss.detach()), float(ref.sum()), [p.grad.clone() for p in gen.lora_parameters()]))
    (loss0, ref0, g0), (loss1, ref1, g1) = results
    assert loss0 == pytest.approx(loss1, rel=1e-6) and ref0 == pytest.approx(ref1, rel=1e-6)
    assert len(g0) == len(g1) > 0 and any(float(g.abs().sum()) > 0 for g in g0)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
