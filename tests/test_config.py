import json

import pytest

from dualipo.config import (PRESETS, ConfigError, RunConfig, build_config, load_config, save_config,
                            to_dict)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_and_round_trip(preset, tmp_path):
    cfg = build_config(preset)
    assert isinstance(cfg, RunConfig)
    path = save_config(cfg, tmp_path / "config.json")
    assert load_config(path) == cfg


def test_overrides_are_typed():
    cfg = build_config("tiny", overrides=["rounds.num_rounds=2", "train.beta=2500", "judging.both_orders=false",
                                          "world.colours=[red, blue]", "generator.path=001",
                                          "train.learning_rate=5e-3", "critic_cold.learning_rate=1E-4"])
    assert cfg.train.learning_rate == 5e-3 and cfg.critic_cold.learning_rate == 1e-4
    assert cfg.rounds.num_rounds == 2
    assert cfg.train.beta == 2500.0 and isinstance(cfg.train.beta, float)
    assert cfg.judging.both_orders is False
    assert cfg.world.colours == ("red", "blue")
    assert cfg.generator.path == "001"  # a string field keeps the raw text


def test_file_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  beta: 100\n  loss: kto\nrounds:\n  num_rounds: 4\n")
    cfg = build_config("small", tmp_path / "c.yaml", ["train.beta=200"])
    assert (cfg.train.beta, cfg.train.loss, cfg.rounds.num_rounds) == (200.0, "kto", 4)
    (tmp_path / "c.json").write_text(json.dumps({"sampling": {"videos_per_prompt": 4}}))
    assert build_config("tiny", tmp_path / "c.json").sampling.videos_per_prompt == 4


@pytest.mark.parametrize("override, message", [
    ("train.bta=1", "unknown config key 'train.bta'"),
    ("nosuch.key=1", "unknown config section 'nosuch'"),
    ("train.beta=abc", "train.beta: expected float"),
    ("train.beta=-1", "train.beta: expected a value > 0"),
    ("judging.certainty_threshold=1.5", "judging.certainty_threshold: expected a value <= 1"),
    ("critic_refine.certainty=foo", "critic_refine.certainty: expected one of ['vote', 'pce']"),
    ("world.colours=[red, pink]", "world.colours: expected one of"),
    ("judging.both_orders=1", "judging.both_orders: expected bool"),
    ("rounds.num_rounds=2.5", "rounds.num_rounds: expected int"),
    ("train=3", "train: expected a mapping"),
    ("train.beta", "expected KEY=VALUE"),
    ("train.noise_range=[0.7, 0.2]", "train.noise_range: expected (lo, hi)"),
    ("train.noise_range=[0.5, 1.5]", "train.noise_range: expected a value <= 1"),
    ("train.loss=ppo", "train.loss: expected one of ['dpo', 'kto', 'sft']"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        build_config("tiny", overrides=[override])
    assert message in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config("tiny", tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        build_config("tiny", tmp_path / "bad.yaml")
    (tmp_path / "unk.yaml").write_text("world:\n  hieght: 3\n")
    with pytest.raises(ConfigError, match="world.hieght"):
        build_config("tiny", tmp_path / "unk.yaml")
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config("huge")


def test_config_dict_is_json_serialisable():
    d = to_dict(build_config("small"))
    assert json.loads(json.dumps(d))["train"]["beta"] == d["train"]["beta"]


@pytest.mark.parametrize("override, new", [
    ("critic_train.refine=false", "it is now critic_refine.refine"),
    ("critic_train.refine_steps=3", "it is now critic_refine.steps"),
    ("critic_train.caption_mix=0.3", "it is now critic_cold.caption_mix"),
    ("critic_train.learning_rate=1e-4", "it is now critic_cold.learning_rate and critic_refine.learning_rate"),
    ("generator.num_layers=2", "it is now generator.arch.num_layers"),
])
def test_removed_keys_fail_naming_their_new_keys(override, new, tmp_path):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=f"config key '{key}' no longer exists: {new}$"):
        build_config("tiny", overrides=[override])
    section, name = key.split(".")
    (tmp_path / "old.yaml").write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=f"config key '{key}' no longer exists: {new}$"):
        build_config("tiny", tmp_path / "old.yaml")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_critic_sections_share_their_common_fields_and_the_architecture_nests(preset):
    from dataclasses import fields

    from dualipo.config import CriticOptimConfig

    cfg = build_config(preset)
    shared = [f.name for f in fields(CriticOptimConfig)]
    assert [getattr(cfg.critic_cold, n) for n in shared] == [getattr(cfg.critic_refine, n) for n in shared]
    tiny = build_config("tiny", overrides=["generator.arch.num_layers=3"])
    assert tiny.generator.arch.num_layers == 3 and tiny.generator.arch.num_heads == 2
