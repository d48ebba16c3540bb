"""Tests for dualipo.video (small synthetic clips, real files in tmp_path)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch

from dualipo.video import (
    Video,
    VideoReadError,
    from_tensor,
    read_video,
    resample_fps,
    sample_frames,
    stack_videos,
    to_tensor,
    write_gif,
    write_png_strip,
    write_video,
)


def gradient_video(t: int = 12, h: int = 32, w: int = 48, fps: float = 12.5) -> Video:
    """Smooth gradient that shifts a little every frame."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    frames = np.stack([(xx * 4 + tt * 3) % 256, (yy * 6 + tt * 2) % 256, (xx + yy) * 2], -1)
    return Video(frames.astype(np.uint8), fps)


def indexed_video(t: int, fps: float = 10.0) -> Video:
    """Frame i is filled with the value i, so frame indices can be read back."""
    frames = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, 2, 2, 3))
    return Video(frames.copy(), fps)


def frame_ids(video: Video) -> list[int]:
    return video.frames[:, 0, 0, 0].tolist()


# --- Video ---------------------------------------------------------------------------


def test_video_properties():
    v = gradient_video(t=10, h=4, w=6, fps=5.0)
    assert (v.num_frames, v.height, v.width, v.duration) == (10, 4, 6, 2.0)


@pytest.mark.parametrize(
    ("frames", "fps", "match"),
    [
        (np.zeros((2, 4, 4, 3), np.float32), 8.0, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), 8.0, r"\(T, H, W, 3\)"),
        (np.zeros((2, 4, 4, 4), np.uint8), 8.0, r"\(T, H, W, 3\)"),
        (np.zeros((0, 4, 4, 3), np.uint8), 8.0, "non-empty"),
        (np.zeros((2, 4, 4, 3), np.uint8), 0.0, "fps"),
        (np.zeros((2, 4, 4, 3), np.uint8), float("nan"), "fps"),
    ],
)
def test_video_validation(frames, fps, match):
    with pytest.raises(ValueError, match=match):
        Video(frames, fps)


# --- write_video / read_video ----------------------------------------------------------


def test_mp4_round_trip(tmp_path):
    v = gradient_video()
    out = write_video(tmp_path / "sub" / "clip.mp4", v)
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["clip.mp4"]
    r = read_video(out)
    assert r.frames.shape == v.frames.shape
    assert r.fps == pytest.approx(12.5)
    assert np.abs(r.frames.astype(int) - v.frames).mean() < 3


def test_odd_size_is_padded_to_even(tmp_path):
    v = gradient_video(t=4, h=33, w=47)
    r = read_video(write_video(tmp_path / "odd.mp4", v))
    assert r.frames.shape == (4, 34, 48, 3)
    assert np.abs(r.frames[:, :33, :47].astype(int) - v.frames).mean() < 3


def test_write_rejects_bad_crf(tmp_path):
    with pytest.raises(ValueError, match="crf"):
        write_video(tmp_path / "x.mp4", gradient_video(t=2), crf=60)
    assert not list(tmp_path.iterdir())


def test_truncated_mp4_raises(tmp_path):
    data = write_video(tmp_path / "full.mp4", gradient_video()).read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="truncated.mp4") as info:
        read_video(bad)
    assert isinstance(info.value.__cause__, av.error.FFmpegError)


def test_text_file_raises(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError, match="notes.mp4"):
        read_video(bad)


@pytest.mark.parametrize(
    ("name", "reason"), [("missing.mp4", "does not exist"), ("empty.mp4", "empty")]
)
def test_missing_or_empty_file_raises(tmp_path, name, reason):
    if name == "empty.mp4":
        (tmp_path / name).touch()
    with pytest.raises(VideoReadError, match=f"{name}: .*{reason}"):
        read_video(tmp_path / name)


def test_file_without_video_stream_raises(tmp_path):
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        samples = np.zeros((1, 1024), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(VideoReadError, match="audio.mp4: no video stream"):
        read_video(path)


# --- sampling --------------------------------------------------------------------------


def test_sample_frames_downsample_keeps_first_and_last():
    s = sample_frames(indexed_video(10, fps=10.0), 4)
    assert frame_ids(s) == [0, 3, 6, 9]
    assert s.duration == pytest.approx(1.0)


def test_sample_frames_upsample_repeats():
    assert frame_ids(sample_frames(indexed_video(3), 5)) == [0, 0, 1, 2, 2]
    assert frame_ids(sample_frames(indexed_video(3), 1)) == [0]
    with pytest.raises(ValueError):
        sample_frames(indexed_video(3), 0)


def test_resample_fps():
    v = indexed_video(8, fps=8.0)
    assert frame_ids(resample_fps(v, 8.0)) == list(range(8))
    half = resample_fps(v, 4.0)
    assert frame_ids(half) == [0, 2, 4, 6] and half.fps == 4.0
    assert frame_ids(resample_fps(v, 16.0)) == [i // 2 for i in range(16)]
    assert frame_ids(resample_fps(indexed_video(10, fps=30.0), 12.0)) == [0, 2, 5, 7]
    with pytest.raises(ValueError):
        resample_fps(v, 0.0)


# --- tensors ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["TCHW", "CTHW"])
@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_tensor_round_trip_is_exact(layout, value_range):
    rng = np.random.default_rng(0)
    v = Video(rng.integers(0, 256, (4, 5, 7, 3), dtype=np.uint8), 8.0)
    x = to_tensor(v, layout, value_range)
    assert x.dtype == torch.float32
    assert tuple(x.shape) == {"TCHW": (4, 3, 5, 7), "CTHW": (3, 4, 5, 7)}[layout]
    assert x.min() >= value_range[0] and x.max() <= value_range[1]
    back = from_tensor(x, layout, value_range, fps=8.0)
    np.testing.assert_array_equal(back.frames, v.frames)
    batched = from_tensor(x[None], layout, value_range, fps=8.0)
    np.testing.assert_array_equal(batched.frames, v.frames)


def test_tensor_layouts_differ():
    v = gradient_video(t=2, h=4, w=6)
    assert tuple(to_tensor(v, "TCHW").shape) == (2, 3, 4, 6)
    assert tuple(to_tensor(v, "CTHW").shape) == (3, 2, 4, 6)


def test_from_tensor_clamps_and_validates():
    x = torch.full((1, 3, 2, 2), 5.0)
    x[:, 0] = -5.0
    f = from_tensor(x, "TCHW", (-1.0, 1.0), fps=4.0).frames
    assert f[..., 0].max() == 0 and f[..., 1].min() == 255
    with pytest.raises(ValueError, match="batch of 2"):
        from_tensor(torch.zeros(2, 1, 3, 2, 2), fps=4.0)
    with pytest.raises(ValueError, match="3 channels"):
        from_tensor(torch.zeros(1, 4, 2, 2), "TCHW", fps=4.0)
    with pytest.raises(ValueError, match="layout"):
        to_tensor(gradient_video(t=1), "THWC")  # type: ignore[arg-type]


def test_stack_videos():
    vids = [gradient_video(t=3, h=4, w=6), gradient_video(t=3, h=4, w=6)]
    assert tuple(stack_videos(vids, "CTHW").shape) == (2, 3, 3, 4, 6)
    with pytest.raises(ValueError, match="video 1 has shape"):
        stack_videos([vids[0], gradient_video(t=4, h=4, w=6)])
    with pytest.raises(ValueError):
        stack_videos([])


# --- thumbnails ------------------------------------------------------------------------


def test_write_gif(tmp_path):
    v = gradient_video(t=20)
    path = write_gif(tmp_path / "thumbs" / "clip.gif", v, max_frames=5)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (32, 48, 3)
    assert np.abs(frames[0].astype(int) - v.frames[0]).mean() < 12


@pytest.mark.parametrize("t", [20, 3])
def test_write_png_strip(tmp_path, t):
    v = gradient_video(t=t)
    path = write_png_strip(tmp_path / "strip.png", v, num_frames=8)
    img = cv2.imread(str(path))
    assert img.shape == (32, 8 * 48, 3)
    np.testing.assert_array_equal(img[:, :48, ::-1], v.frames[0])  # BGR on disk, lossless
    np.testing.assert_array_equal(img[:, -48:, ::-1], v.frames[-1])




def _samples() -> list[Video]:
    """Eight samples of the shipped small generator (32 x 32, 9 frames): the videos the loop writes."""
    from dualipo.config import build_config
    from dualipo.generators import build_generator
    from dualipo.toy.world import prompt_pools

    cfg = build_config("small")
    w = cfg.world
    return build_generator(cfg).sample(prompt_pools(w)[1][:8], list(range(8)), num_frames=w.num_frames,
                                       height=w.height, width=w.width, progress=False)


def test_the_same_frames_always_encode_to_the_same_file(tmp_path):
    """libx264's macroblock tree read memory it had not written on frames this small: the same frames gave another
    file depending on the heap's contents (8 of 32 of the small base's samples).
    With it off, every encode of the same frames is the same file."""
    import hashlib

    rng = np.random.default_rng(0)
    changed = 0
    for seed, video in enumerate(_samples()):
        files = set()
        for rep in range(4):
            junk = [rng.integers(0, 255, int(rng.integers(1000, 200000)), dtype=np.uint8).tobytes() for _ in range(20)]
            path = write_video(tmp_path / f"{seed}_{rep}.mp4", video)
            files.add(hashlib.sha256(path.read_bytes()).hexdigest())
            del junk
        changed += len(files) > 1
    assert changed == 0
