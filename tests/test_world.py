import numpy as np
import pytest

from dualipo.config import WorldConfig
from dualipo.toy.world import Obj, Scene, parse_prompt, prompt_pools, render, sample_scene, scene_to_prompt

CFG = WorldConfig()


def test_prompt_grammar_round_trips():
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = sample_scene(rng, CFG)
        assert parse_prompt(scene.prompt) == scene
    assert {sample_scene(rng, CFG).count for _ in range(200)} == {1, 2}


def test_prompt_forms():
    s = Scene(Obj("circle", "red"), "left", "black", speed="quickly")
    assert s.prompt == "a red circle moving left quickly on a black background"
    two = Scene(Obj("square", "blue"), "growing", "gray", count=2)
    assert two.prompt == "two blue squares growing on a gray background"
    pair = Scene(Obj("circle", "red"), "static", "navy", other=Obj("triangle", "green"), relation="above")
    assert pair.prompt == "a red circle above a green triangle, staying still, on a navy background"
    assert parse_prompt(pair.prompt) == pair


@pytest.mark.parametrize("bad", ["a purple circle moving left on a black background", "hello",
                                 "a red circle moving sideways on a black background"])
def test_parse_rejects_text_outside_grammar(bad):
    with pytest.raises(ValueError, match="grammar"):
        parse_prompt(bad)


def test_scene_validation():
    with pytest.raises(ValueError, match="different colours"):
        Scene(Obj("circle", "red"), "left", other=Obj("square", "red"), relation="above")
    with pytest.raises(ValueError, match="speed"):
        Scene(Obj("circle", "red"), "growing", speed="quickly")


def test_render_is_deterministic_and_antialiased():
    scene = parse_prompt("a white circle moving right on a black background")
    a, b, c = render(scene, 3, CFG), render(scene, 3, CFG), render(scene, 4, CFG)
    assert a.frames.shape == (CFG.num_frames, CFG.height, CFG.width, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    grey = a.frames[..., 0]
    edge = (grey > 10) & (grey < 230)
    assert edge.any(), "anti-aliasing leaves intermediate values on the edges"
    xs = [np.nonzero(f[..., 0].max(0) > 128)[0].mean() for f in a.frames]
    assert xs[-1] - xs[0] > 0.2 * CFG.width and np.all(np.diff(xs) > 0)


def test_objects_stay_inside_the_frame():
    rng = np.random.default_rng(5)
    for seed in range(40):
        scene = sample_scene(rng, CFG)
        v = render(scene, seed, CFG)
        border = np.concatenate([v.frames[:, 0], v.frames[:, -1], v.frames[:, :, 0], v.frames[:, :, -1]], 1)
        assert np.abs(border.astype(int) - border[0, 0]).max() <= 2, scene.prompt


def test_prompt_pools_are_disjoint_and_stable():
    train, held_out = prompt_pools(CFG)
    assert len(held_out) == CFG.num_eval_prompts and len(train) == CFG.num_train_prompts
    assert not set(train) & set(held_out)
    bigger = WorldConfig(num_train_prompts=CFG.num_train_prompts + 50)
    assert prompt_pools(bigger)[1] == held_out
    with pytest.raises(ValueError, match="distinct prompts"):
        prompt_pools(WorldConfig(shapes=("circle",), colours=("red",), backgrounds=("black",),
                                 motions=("left",), num_eval_prompts=50))
