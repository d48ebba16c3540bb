"""Multi-process training through `accelerate launch`: two CPU processes (gloo) give the single-process losses
under every engine that can run on CPU, and resume from a mid-run checkpoint under that engine; the shipped
accelerate config files parse and name their engine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualipo.accelerate_configs import CONFIGS, accelerate_config

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_shipped_accelerate_configs_parse_and_name_their_engine():
    from accelerate.commands.config.config_args import ClusterConfig

    expected = {"ddp": ("MULTI_GPU", None), "fsdp": ("FSDP", None), "zero2": ("DEEPSPEED", 2),
                "zero3": ("DEEPSPEED", 3)}
    assert set(CONFIGS) == set(expected)
    for name, (kind, stage) in expected.items():
        cfg = ClusterConfig.from_yaml_file(str(accelerate_config(name)))  # rejects unknown keys
        assert str(cfg.distributed_type).split(".")[-1] == kind, name
        assert (cfg.mixed_precision, cfg.num_machines, cfg.use_cpu) == ("bf16", 1, False), name
        if kind == "FSDP":
            assert cfg.fsdp_config["fsdp_version"] == 2
            assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        if stage:
            assert cfg.deepspeed_config["zero_stage"] == stage
    with pytest.raises(ValueError, match="unknown accelerate config 'zero4'; shipped: ddp, fsdp, zero2, zero3"):
        accelerate_config("zero4")


def test_cli_prints_the_config_path(capsys):
    from dualipo.cli import main

    assert main(["accelerate-config", "zero3"]) == 0
    assert Path(capsys.readouterr().out.strip()) == accelerate_config("zero3")
    assert main(["accelerate-config", "nope"]) == 2


@pytest.mark.slow
def test_two_process_run_matches_single_process(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one")], check=True, capture_output=True)
    # `--cpu` would start ONE process; `--multi_gpu` without CUDA starts two in a gloo CPU group
    launch = [*LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", str(SCRIPT), str(tmp_path / "two")]
    p = subprocess.run(launch, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "one" / "num_processes").read_text() == "1"
    assert (tmp_path / "two" / "num_processes").read_text() == "2"
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4)
    assert (tmp_path / "two" / "generator_lora.safetensors").is_file()


# ------------------------------------------------------------------------------------------ every engine

STEPS = ["--steps", "4", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "one"
    subprocess.run([sys.executable, str(SCRIPT), str(out), *STEPS], check=True, capture_output=True)
    return out


def _engine_flags(name: str) -> tuple[list[str], str]:
    """Extra script flags and the engine the trainer must report; skips (with the reason) where it cannot run."""
    gpus = torch.cuda.device_count()
    if name.startswith("zero"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
        if gpus < 2:
            pytest.skip("accelerate 1.15 enables DeepSpeed only on accelerators (AcceleratorState: "
                        "ACCELERATE_USE_DEEPSPEED and not cpu); a 2-process DeepSpeed run needs 2 GPUs")
        return [], "deepspeed"
    if name == "fsdp":
        # on CPU accelerate turns an FSDP launch into MULTI_CPU; the script then sets FSDP itself (see its doc)
        return ([] if gpus >= 2 else ["--force-fsdp-on-cpu"]), "fsdp"
    return [], "ddp"


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_engine_matches_single_process_and_resumes(name, single, tmp_path):
    flags, engine = _engine_flags(name)
    out = tmp_path / name
    launch = [*LAUNCH, "--config_file", str(accelerate_config(name)), "--num_processes", "2",
              "--mixed_precision", "no", str(SCRIPT), str(out), *STEPS, *flags]
    crashed = subprocess.run([*launch, "--crash-at", "4"], capture_output=True, text=True)
    assert crashed.returncode != 0 and "interrupted before step 4" in crashed.stderr, crashed.stderr[-3000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000002"]
    assert len(_losses(out)) == 3  # step 3 ran but was not checkpointed: it is recomputed
    p = subprocess.run(launch, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"training engine: {engine}, 2 process(es)" in p.stderr
    assert "resumed from" in p.stderr and "at step 2" in p.stderr
    assert (out / "num_processes").read_text() == "2"
    one, two = _losses(single), _losses(out)
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=1e-4)
    # the final adapter is the single-process file (full tensors, same keys), whatever the engine sharded. Adam's
    # normalised steps turn the all-reduce's rounding of near-zero gradients into weight differences of up to
    # ~1e-3 (an uninterrupted 2-process DDP run shows the same) against 4 steps x lr 5e-3 = 2e-2 of movement
    a, b = load_file(str(single / "generator_lora.safetensors")), load_file(str(out / "generator_lora.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert b[k].shape == a[k].shape, k
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=2e-3)


def test_gathered_adapter_file_equals_save_lora(tmp_path):
    """What the sharded engines write from gathered LoRA tensors is the file `Generator.save_lora` writes."""
    from safetensors import safe_open

    from dualipo.config import build_config
    from dualipo.engines import save_lora_state
    from dualipo.generators import build_generator

    gen = build_generator(build_config("tiny"))
    gen.add_lora(seed=0)
    a = gen.save_lora(tmp_path / "a")
    weights = {n: p.detach().clone() for n, p in gen.transformer.named_parameters() if "lora_" in n}
    b = save_lora_state(gen, weights, tmp_path / "b")
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and ta
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    metas = []
    for path in (a, b):
        with safe_open(str(path), "pt") as f:
            header = f.metadata()
        meta = json.loads(header["lora_adapter_metadata"])
        meta["target_modules"] = sorted(meta["target_modules"])  # a set, written in set order
        metas.append((header["format"], meta))
    assert metas[0] == metas[1]
