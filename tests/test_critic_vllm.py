"""The vLLM critic backend: its requests and its Judgments are the transformers backend's (one code path,
`critics.requests`), tested without vLLM; a real vLLM engine on a tiny saved Qwen2-VL where vLLM and CUDA are.

Without vLLM the engine is a stand-in that records the requests and returns hand-written texts (vLLM cannot run
on this machine); the transformers critic is a tiny real model whose `generate` returns the same texts."""

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dualipo.config import build_config
from dualipo.critics import build_critic
from dualipo.critics.qwen_vl import save_model
from dualipo.critics.vision_inputs import VisionSpec, patchify
from dualipo.critics.vllm_backend import VLLMCritic, engine_kwargs, model_dir, staged
from dualipo.toy.world import render_prompt

PROMPT = "a red circle moving left on a black background"
HAS_VLLM = importlib.util.find_spec("vllm") is not None


class ScriptedEngine:
    """Stands in for `vllm.LLM` (not installable here): records each `generate` call, answers from a script."""

    def __init__(self, script):
        self.script, self.calls = list(script), []

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        outs = [self.script.pop(0) for _ in prompts]
        return [SimpleNamespace(outputs=[SimpleNamespace(text=t) for t in group]) for group in outs]


@pytest.fixture(scope="module")
def cfg():
    c = build_config("tiny")
    return dataclasses.replace(c, judging=dataclasses.replace(c.judging, num_votes=3))


@pytest.fixture(scope="module")
def videos(cfg):
    return render_prompt(PROMPT, 0, cfg.world), render_prompt(PROMPT, 1, cfg.world)


def pair_of_backends(cfg, script):
    """(transformers critic answering from `script`, its recorded calls, vLLM critic on a ScriptedEngine)."""
    qwen = build_critic(cfg)
    calls, answers = [], list(script)

    def scripted(texts, visuals, k, do_sample=None):
        calls.append((texts, visuals, k, do_sample))
        return [answers.pop(0) for _ in texts]

    qwen.generate = scripted
    spec = VisionSpec.from_model(qwen.model.config, cfg.critic.num_frames, cfg.critic.image_size)
    engine = ScriptedEngine(script)  # the same K texts per request as the transformers critic returns
    engine.spec = spec
    return qwen, calls, VLLMCritic(engine, spec, 7, cfg.critic, cfg.judging, sampling_params=dict), engine


def same_requests(calls, engine):
    """Every vLLM call carries the transformers call's texts, in order, and the same frames (patchified alike)."""
    assert len(calls) == len(engine.calls)
    for (texts, visuals, _, _), (prompts, _) in zip(calls, engine.calls):
        assert [p["prompt"] for p in prompts] == texts
        for vis, p in zip(visuals, prompts):
            frames = p["multi_modal_data"]["video"]
            assert len(frames) == len(vis) == p["prompt"].count("<|video_pad|>")
            for (patches, grid), (f, meta) in zip(vis, frames):
                assert f.dtype == np.uint8 and meta["total_num_frames"] == f.shape[0] and meta["fps"] == 8.0
                got, got_grid = patchify(torch.from_numpy(f), engine.spec)
                assert torch.equal(got_grid, grid)
                assert (got - patches).abs().max() <= 0.5 / 255 / 0.26 + 1e-6  # uint8 rounding / CLIP std


def test_pairwise_both_orders_same_prompts_frames_and_votes(cfg, videos):
    a, b = videos
    script = [["Video A moves left.\nAnswer: A", "Answer: A", "no verdict"],  # (a, b): A, A, abstain
              ["Answer: B", "Answer: A", "Answer: tie"]]  # (b, a): B -> A, A -> B, tie
    qwen, calls, vc, engine = pair_of_backends(cfg, script)
    j_vllm = vc.judge(PROMPT, a, b, "motion")
    j_qwen = qwen.judge(PROMPT, a, b, "motion")
    same_requests(calls, engine)
    assert j_vllm == j_qwen
    assert (j_vllm.verdict, j_vllm.votes, j_vllm.abstentions) == ("A", {"A": 3, "B": 1, "tie": 1}, 1)
    assert j_vllm.certainty == pytest.approx(3 / 5)
    assert [s.order for s in j_vllm.samples] == ["AB"] * 3 + ["BA"] * 3
    prompts, params = engine.calls[0]
    assert len(prompts) == 2 and "Which video is better on motion?" in prompts[0]["prompt"]
    assert all(p["n"] == 3 and p["temperature"] == cfg.judging.temperature and p["top_p"] == cfg.judging.top_p
               and p["max_tokens"] == cfg.critic.max_new_tokens and p["stop_token_ids"] == [7] for p in params)
    assert params[0]["seed"] + 1 == params[1]["seed"]  # one seed per request, drawn from torch's generator


def test_two_step_same_prompts_and_descriptions(cfg, videos):
    a, b = videos
    two = dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, describe_first=True, num_votes=2))
    captions = [["The video shows a red circle.", "The video shows a red dot."],  # video a, paths 1 and 2
                ["The video shows a blue square.", "free text"]]  # video b
    verdicts = [[" Video A is better.\nAnswer: A"], ["\nAnswer: B"], ["\nAnswer: B"], ["\nAnswer: B"]]
    qwen, calls, vc, engine = pair_of_backends(two, captions + verdicts)
    j_vllm = vc.judge(PROMPT, a, b, "motion")
    j_qwen = qwen.judge(PROMPT, a, b, "motion")
    same_requests(calls, engine)
    assert j_vllm == j_qwen
    starts = [p["prompt"].split("<|im_start|>assistant\n")[1] for p in engine.calls[1][0]]
    assert starts == ["Video A shows a red circle. Video B shows a blue square.",
                      "Video A shows a red dot. Video B shows free text.",
                      "Video A shows a blue square. Video B shows a red circle.",
                      "Video A shows free text. Video B shows a red dot."]
    assert all(PROMPT not in p["prompt"] for p in engine.calls[0][0])  # described without the prompt
    assert [p["n"] for p in engine.calls[0][1]] == [2, 2] and [p["n"] for p in engine.calls[1][1]] == [1] * 4
    assert j_vllm.samples[0].text == "Video A shows a red circle. Video B shows a blue square. Video A is better." \
                                     "\nAnswer: A"
    # AB: A, B; BA: B -> A, B -> A: A 3, B 1
    assert (j_vllm.verdict, j_vllm.votes, j_vllm.certainty) == ("A", {"A": 3, "B": 1}, 0.75)


def test_pointwise_and_greedy_single_vote(cfg, videos):
    a, _ = videos
    qwen, calls, vc, engine = pair_of_backends(cfg, [["Answer: Good", "Fine.\nAnswer: Good", "Answer: Bad"],
                                                     ["Answer: Normal"]])
    p_vllm, p_qwen = vc.score(PROMPT, a, "consistency"), qwen.score(PROMPT, a, "consistency")
    assert p_vllm == p_qwen and p_vllm.mode == "pointwise"
    assert (p_vllm.verdict, p_vllm.votes, p_vllm.certainty) == ("Good", {"Good": 2, "Bad": 1}, pytest.approx(2 / 3))
    g_vllm = vc.score_many([(PROMPT, a, "motion")], num_votes=1, chain_of_thought=False)[0]
    g_qwen = qwen.score_many([(PROMPT, a, "motion")], num_votes=1, chain_of_thought=False)[0]
    same_requests(calls, engine)
    assert g_vllm == g_qwen and g_vllm.verdict == "Normal"
    greedy = engine.calls[1][1][0]
    assert greedy["n"] == 1 and greedy["temperature"] == 0.0 and "seed" not in greedy


def test_greedy_with_k_paths_repeats_the_one_answer(cfg, videos):
    cold = dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, temperature=0.0))
    _, _, vc, engine = pair_of_backends(cold, [["Answer: A"], ["Answer: A"]])
    j = vc.judge(PROMPT, *videos, "motion")
    assert [p["n"] for p in engine.calls[0][1]] == [1, 1] and len(j.samples) == 6
    # the greedy answer 'A' for (a, b) three times, 'A' for (b, a) (= B) three times: an even split, no verdict
    assert (j.verdict, j.votes, j.certainty) == (None, {"A": 3, "B": 3}, 0.0)


def test_processor_config_and_engine_arguments(cfg, tmp_path):
    qwen = build_critic(cfg)
    save_model(qwen.model, qwen.tokenizer, tmp_path / "critic", dtype="float32")
    spec = VisionSpec.from_model(qwen.model.config, cfg.critic.num_frames, cfg.critic.image_size)
    ready = staged(tmp_path / "critic", qwen.model.config, spec)
    assert ready != tmp_path / "critic" and (ready / "model.safetensors").resolve().parent == tmp_path / "critic"
    proc = json.loads((ready / "preprocessor_config.json").read_text())
    assert (proc["patch_size"], proc["temporal_patch_size"], proc["merge_size"]) == (8, 2, 2)
    assert proc["size"] == {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    loaded = Qwen2VLImageProcessorPil.from_pretrained(ready)
    assert loaded.patch_size == 8 and loaded.image_std == pytest.approx(proc["image_std"])
    assert staged(ready, qwen.model.config, spec) == ready  # a directory with a processor config is used as is
    c = dataclasses.replace(cfg.critic, path=str(tmp_path / "critic"), vllm_tensor_parallel=2)
    kw = engine_kwargs(c, model_dir(c), spec)
    assert kw["model"] == kw["tokenizer"] == str(tmp_path / "critic") and kw["tensor_parallel_size"] == 2
    assert kw["limit_mm_per_prompt"] == {"video": 2} and kw["mm_processor_kwargs"]["do_sample_frames"] is False
    assert "max_model_len" not in kw and kw["trust_remote_code"] is False
    with pytest.raises(ValueError, match="critic.path.*Qwen2.5-VL-7B-Instruct.*no such directory"):
        model_dir(dataclasses.replace(cfg.critic, path="Qwen/Qwen2.5-VL-7B-Instruct"))  # never a hub name


def test_to_host_puts_the_engine_to_sleep_and_to_device_wakes_it(cfg):
    engine = ScriptedEngine([])
    engine.sleep = lambda level: engine.calls.append(("sleep", level))
    engine.wake_up = lambda: engine.calls.append(("wake_up",))
    critic = VLLMCritic(engine, None, None, cfg.critic, cfg.judging)
    critic.to_device()  # awake already: nothing
    critic.to_host()
    critic.to_host()  # the loop parks before every stage that is not judging: one sleep
    critic.to_device()
    critic.to_device()
    assert engine.calls == [("sleep", 1), ("wake_up",)]
    assert engine_kwargs(cfg.critic, Path("x"), VisionSpec(patch_size=8, temporal_patch_size=2, merge_size=2, num_frames=4, image_size=32))["enable_sleep_mode"] is True


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-vLLM error cannot happen")
def test_backend_vllm_without_vllm_says_how_to_install(cfg):
    with pytest.raises(ImportError, match=r"pip install 'dualipo\[vllm\]'"):
        build_critic(dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, backend="vllm")))


def test_no_vllm_import_at_module_import():
    import subprocess
    import sys

    code = "import sys, dualipo.critics, dualipo.critics.vllm_backend, dualipo.cli; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA device; none here")
def test_real_vllm_engine_judges_with_a_tiny_saved_qwen2_vl(cfg, videos, tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'dualipo[vllm]')")
    head64 = dict(hidden_size=128, intermediate_size=256, num_heads=2, num_kv_heads=1, mrope_section=(8, 12, 12),
                  vision_embed_dim=128, vision_heads=2)  # head dims vLLM's attention kernels take
    c = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, **head64))
    qwen = build_critic(c)
    save_model(qwen.model, qwen.tokenizer, tmp_path / "critic", dtype="float16")
    v = dataclasses.replace(c, critic=dataclasses.replace(c.critic, backend="vllm", path=str(tmp_path / "critic"),
                                                          dtype="float16", vllm_gpu_memory=0.3,
                                                          vllm_max_model_len=1024))
    critic = build_critic(v)
    k = c.judging.num_votes
    j = critic.judge(PROMPT, *videos, "motion")
    assert len(j.samples) == 2 * k and {s.order for s in j.samples} == {"AB", "BA"}
    assert j.abstentions + sum(j.votes.values()) == 2 * k and 0.0 <= j.certainty <= 1.0
    assert len(critic.score(PROMPT, videos[0], "consistency").samples) == k
    two = VLLMCritic(critic.llm, critic.spec, critic.eos, v.critic,
                     dataclasses.replace(v.judging, describe_first=True))
    assert two.judge(PROMPT, *videos, "motion").samples[0].text.startswith("Video A shows")
    critic.close()


def test_a_multi_process_run_refuses_the_vllm_critic(cfg):
    from dualipo.loop.setup import check_run_config

    v = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, backend="vllm"),
                            train=dataclasses.replace(cfg.train, batch_size=2))
    check_run_config(v, 1)
    with pytest.raises(ValueError, match="critic.backend=vllm under 2 processes.*vllm_tensor_parallel"):
        check_run_config(v, 2)
