"""`dualipo plan`: counted parameters equal the real models', the formulas against hand-computed values for the
tiny preset, the warning for a stage that does not fit, the published architectures, and the command line."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dualipo import plan_math as pm
from dualipo import published
from dualipo.cli import main
from dualipo.config import build_config
from dualipo.plan import PlanConfig, make_plan
from dualipo.plan_models import build_component, critic_arch, gen_arch, numel


@pytest.mark.parametrize("backend", ["wan", "cogvideox"])
def test_generator_counts_equal_the_built_tiny_model(backend):
    from dualipo.generators import build_generator

    cfg = build_config("tiny", overrides=[f"generator.backend={backend}"])
    arch, _ = gen_arch(cfg)
    gen = build_generator(cfg)
    for comp in ("transformer", "vae", "text_encoder"):
        assert arch.params[comp] == sum(p.numel() for p in getattr(gen.pipe, comp).parameters())
    gen.add_lora()
    assert arch.params["lora"] == sum(p.numel() for p in gen.lora_parameters())
    assert arch.source == "config fields (generator.path='')"


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_critic_counts_equal_the_built_tiny_model(finetune):
    from dualipo.critic_training.loop import _apply_lora
    from dualipo.critics import build_critic

    cfg = build_config("tiny", overrides=[f"critic_refine.finetune={finetune}"])
    arch = critic_arch(cfg)
    model = build_critic(cfg).model
    assert arch.params["total"] == sum(p.numel() for p in model.parameters())
    assert arch.params["vision"] == sum(p.numel() for p in model.model.visual.parameters())
    if finetune == "lora":
        peft = _apply_lora(model, cfg.critic_refine)
        assert arch.params["lora"] == sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)


def _tiny_wan():
    return gen_arch(build_config("tiny"))


def test_transformer_flops_by_hand_and_by_torch():
    """Tiny Wan: d = 2 x 8 = 16, f = 32, 2 blocks, patch 2, 4 latent channels, text and time width 16. A 9-frame
    32 x 32 video: (9 - 1) // 4 + 1 = 3 latent frames of 32 / 4 / 2 = 4 x 4 patches, S_v = 48; L = 24."""
    arch, mods = _tiny_wan()
    s_v, text = pm.video_tokens(arch, 9, 32, 32), 24
    assert s_v == 3 * 4 * 4
    f = pm.transformer_flops(arch, s_v, text)
    # per block: self q,k,v,o + cross q,o on 48 tokens (2*48*6*16^2), cross k,v on 24 (2*24*2*16^2), ff 2*48*2*16*32
    assert f["linear"] == 2 * (147456 + 24576 + 98304)
    assert f["attention"] == 2 * (4 * 48 * 48 * 16 + 4 * 48 * 24 * 16)
    # patch in and out (2*48*16*16 each), timestep MLP 2*(16*16+16*16), 6d modulation 2*16*96, text MLP 2*24*(256+256)
    assert f["embed"] == 24576 + 24576 + 1024 + 3072 + 24576
    x = torch.zeros(1, 4, 3, 8, 8, device="meta")
    with FlopCounterMode(display=False) as counter:
        mods["transformer"](hidden_states=x, encoder_hidden_states=torch.zeros(1, text, 16, device="meta"),
                            timestep=torch.zeros(1, device="meta"), return_dict=False)
    assert counter.get_total_flops() == sum(f.values()) == 1060864


def test_cogvideox_flops_match_torch_count():
    arch, mods = gen_arch(build_config("tiny", overrides=["generator.backend=cogvideox"]))
    f = pm.transformer_flops(arch, 48, 24)
    assert f["attention"] == 2 * 4 * 72 * 72 * 16  # joint attention over S = 48 + 24 tokens
    with FlopCounterMode(display=False) as counter:
        mods["transformer"](hidden_states=torch.zeros(1, 3, 4, 8, 8, device="meta"),
                            encoder_hidden_states=torch.zeros(1, 24, 16, device="meta"),
                            timestep=torch.zeros(1, dtype=torch.long, device="meta"), return_dict=False)
    assert counter.get_total_flops() == sum(f.values())


def test_dpo_step_flops_and_training_memory_by_hand():
    arch, _ = _tiny_wan()
    assert arch.params["lora"] == 2 * 8 * 8 * (16 + 16)  # 2 blocks x 8 targeted 16x16 linears, r = 8
    step = pm.dpo_step_flops(arch, 48, 24)
    fwd, lora = 1060864, 2 * 48 * 4096
    assert step["policy_forward"] == 2 * (fwd + lora)
    assert step["policy_backward"] == 2 * (540672 + 77824 + 2 * 442368 + 2 * lora)
    assert step["reference_forward"] == 2 * fwd
    assert step["total"] == 9609216
    assert pm.dpo_step_flops(arch, 48, 24, checkpointing=True)["recompute"] == 2 * (fwd + lora)
    # 2 videos x 48 tokens; per block 18*16 + 2*32 values a token, + cross k,v 2 x 24 x 2*16; fp32
    block = 96 * (18 * 16 + 2 * 32) * 4 + 2 * 24 * 2 * 16 * 4
    assert block == 141312
    assert pm.train_activation_bytes(arch, 48, 24, 2, 4, False) == 2 * block + block
    assert pm.train_activation_bytes(arch, 48, 24, 2, 4, True) == 2 * 96 * 16 * 4 + block + block


def test_tiny_plan_stages_and_training_memory():
    cfg = build_config("tiny")
    plan = make_plan(cfg, PlanConfig())
    names = [s["stage"] for s in plan["stages"]]
    assert names == ["sampling", "judging", "critic refinement", "generator training", "evaluation"]
    train = plan["stages"][3]
    arch, _ = _tiny_wan()
    weights = (10176 + 42191 + 2736) * 4
    act = pm.train_activation_bytes(arch, 48, 24, 2, 4, False)
    assert train["peak_gib"] * pm.GiB == pytest.approx(weights + 16 * 4096 + act)
    assert plan["warnings"] == []


def test_a_stage_that_does_not_fit_is_named(capsys):
    assert main(["plan", "--preset", "tiny", "--gpu-mem", "0.0001"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: judging needs" in out and "more than --gpu-mem 0.0001 GiB" in out
    peaks = {s["stage"]: s["peak_gib"] for s in make_plan(build_config("tiny"), PlanConfig())["stages"]}
    mem = sorted(peaks.values())[2]  # between the stages' peaks: some fit, some do not
    plan = make_plan(build_config("tiny"), PlanConfig(gpu_mem=mem))
    named = [w.split(" needs")[0] for w in plan["warnings"] if "together" not in w]
    assert named == [k for k, v in peaks.items() if v > mem] and named


def test_batch_rows_bound_the_judging_peak_and_add_up_the_calls():
    """judging.batch_rows=1 on the tiny unit (1 pair x 2 orders = 2 rows): two calls of one row each, so the
    peak is one row's and the time twice one row's call; without a bound the one call holds both rows."""
    from dualipo.plan import JudgeUnit, judge_cost, judging_unit

    cfg = build_config("tiny")
    unit = judging_unit(cfg)
    assert (unit.rows, unit.videos, unit.judgments) == (2, 2, 1)
    c, p = critic_arch(cfg, ""), PlanConfig()
    one_row = judge_cost(cfg, p, c, JudgeUnit(1, 2, 0.5))
    split = judge_cost(build_config("tiny", overrides=["judging.batch_rows=1"]), p, c, unit)
    whole = judge_cost(cfg, p, c, unit)
    assert split[0] == pytest.approx(2 * one_row[0]) and split[1] == one_row[1] < whole[1]
    assert judge_cost(build_config("tiny", overrides=["judging.batch_rows=2"]), p, c, unit) == whole


def test_cli_json_mixes_options_and_overrides(capsys):
    assert main(["plan", "--preset", "tiny", "sampling.prompts_per_round=4", "--json", "--gpus", "2",
                 "train.batch_size=2", "--mfu", "0.5"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["plan"]["gpus"] == 2 and plan["plan"]["mfu"] == 0.5
    sampling = plan["stages"][0]
    assert sampling["work"] == 4 * 2 and sampling["gpus"] == 2
    assert plan["round_hours"] == pytest.approx(sum(s["hours"] for s in plan["stages"]))
    assert main(["plan", "--preset", "tiny", "--gpus", "3", "train.batch_size=2"]) == 2
    assert "must be divisible by --gpus 3" in capsys.readouterr().err


@pytest.mark.parametrize("name,expected,known", [("cogvideox-2b", 1_693_783_872, 1.69e9),
                                                  ("cogvideox-5b", 5_570_283_072, 5.57e9),
                                                  ("wan2.1-t2v-1.3b", 1_418_996_800, 1.42e9)])
def test_published_generators_build_on_meta(name, expected, known):
    n = numel(build_component(*published.GENERATORS[name]["transformer"]))
    assert n == expected and abs(n - known) / known < 0.01


def test_published_critic_and_missing_directory_resolution(capsys):
    cfg = build_config("full")  # critic.path models/Qwen2.5-VL-7B-Instruct does not exist here
    arch = critic_arch(cfg)
    assert arch.params["total"] == 8_292_166_656 and abs(arch.params["total"] - 8.29e9) / 8.29e9 < 0.01
    assert arch.source.startswith("published qwen2.5-vl-7b-instruct")
    assert (arch.hidden, arch.layers, arch.kv_heads, arch.head_dim) == (3584, 28, 4, 128)
    with pytest.raises(ValueError, match="generator.path='elsewhere/mine'.*known directory names"):
        gen_arch(build_config("full", overrides=["generator.path=elsewhere/mine"]))
    arch, _ = gen_arch(build_config("full", overrides=["generator.path=elsewhere/mine"]), "cogvideox-5b")
    assert arch.params["transformer"] == 5_570_283_072
    with pytest.raises(ValueError, match="is a wan model but generator.backend='cogvideox'"):
        gen_arch(build_config("full"), "wan2.1-t2v-1.3b")


def test_a_local_directory_wins_over_the_published_config(tmp_path):
    from dualipo.generators import build_generator

    tiny = build_config("tiny", overrides=["generator.backend=cogvideox"])
    local = tmp_path / "CogVideoX-2b"  # the public name, but the directory exists: its config.json files win
    build_generator(tiny).save_pretrained(local)
    cfg = build_config("tiny", overrides=["generator.backend=cogvideox", f"generator.path={local}"])
    arch, _ = gen_arch(cfg)
    assert arch.source == f"config.json files in {local}"
    assert arch.params == gen_arch(tiny)[0].params
