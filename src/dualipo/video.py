"""Video I/O, thumbnails, frame sampling and tensor conversion.

Videos are held in memory as :class:`Video`: uint8 RGB frames of shape ``(T, H, W, 3)``
plus a frame rate. Files are written atomically (temp file in the target directory,
then :func:`os.replace`), so an interrupted write never leaves a truncated file behind.
``torch`` is imported lazily, only by the tensor functions, to keep CLI startup fast.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

Layout = Literal["TCHW", "CTHW"]
ValueRange = tuple[float, float]

#: Frame rate assumed by :func:`read_video` when a stream declares no average rate.
DEFAULT_FPS = 24.0
_PERMUTE_FROM_THWC = {"TCHW": (0, 3, 1, 2), "CTHW": (3, 0, 1, 2)}
_PERMUTE_TO_THWC = {"TCHW": (0, 2, 3, 1), "CTHW": (1, 2, 3, 0)}


@dataclass(frozen=True, eq=False)
class Video:
    """An RGB clip: ``frames`` is uint8 ``(T, H, W, 3)`` with ``T >= 1``; ``fps > 0``."""

    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray):
            raise ValueError(f"Video.frames must be a numpy array, got {type(f).__name__}")
        if f.dtype != np.uint8:
            raise ValueError(f"Video.frames must have dtype uint8, got {f.dtype}")
        if f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"Video.frames must have shape (T, H, W, 3), got {f.shape}")
        if f.shape[0] < 1 or f.shape[1] < 1 or f.shape[2] < 1:
            raise ValueError(f"Video.frames must be non-empty, got shape {f.shape}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"Video.fps must be a finite number > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Length in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps


def video_name(video: "Video | str | os.PathLike[str]") -> str:
    """How a judgment names a video: its path, or its shape for an in-memory clip."""
    return str(video) if not isinstance(video, Video) else f"<video {video.num_frames}x{video.height}x{video.width}>"


def video_key(video: "Video | str | os.PathLike[str]") -> str | int:
    """A key that tells videos apart within one call: the path, or the object's identity for an in-memory clip
    (in-memory clips of one shape share a name)."""
    return str(video) if not isinstance(video, Video) else id(video)


class VideoReadError(ValueError):
    """A video file is missing, unreadable, corrupt or holds no decodable frames."""


@contextmanager
def _atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``path``; move it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | os.PathLike[str], video: Video, crf: int = 18) -> Path:
    """Encode ``video`` as H.264 (libx264, yuv420p) MP4 at ``path``; return the path.

    yuv420p needs even width and height, so an odd dimension is padded by replicating
    the last row/column. The original size is not recorded: reading the file back gives
    the padded (even) size. Parent directories are created; the write is atomic.
    """
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    frames = video.frames
    pad = ((0, 0), (0, video.height % 2), (0, video.width % 2), (0, 0))
    if pad[1][1] or pad[2][1]:
        frames = np.pad(frames, pad, mode="edge")
    with _atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=_rate(video.fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # mbtree off: with it, libx264 encoding our small frames read memory it had not written, so the same frames
        # gave different files depending on what the process did before (8 of 32 of the small base's samples)
        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return Path(path)


def read_video(path: str | os.PathLike[str]) -> Video:
    """Decode the first video stream of ``path`` to RGB.

    ``fps`` is the stream's average frame rate, or :data:`DEFAULT_FPS` if it declares none.
    Raises :class:`VideoReadError` (naming the file) if the file is missing or empty,
    cannot be demuxed/decoded, has no video stream, yields no frames, or yields fewer
    frames than its container declares (a truncated file).
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: file does not exist")
    if not path.is_file():
        raise VideoReadError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: no video stream")
            stream = container.streams.video[0]
            declared = stream.frames
            rate = stream.average_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.error.FFmpegError as e:
        raise VideoReadError(f"{path}: cannot decode video ({e})") from e
    if not frames:
        raise VideoReadError(f"{path}: no decodable frames")
    if declared and len(frames) < declared:
        raise VideoReadError(
            f"{path}: decoded only {len(frames)} of {declared} frames (truncated or corrupt)"
        )
    fps = float(rate) if rate else DEFAULT_FPS
    return Video(np.stack(frames), fps)


def sample_frames(video: Video, num_frames: int) -> Video:
    """Pick ``num_frames`` uniformly spaced frames, always including the first and last.

    Indices are ``round(linspace(0, T - 1, num_frames))``, so asking for more frames than
    the clip has repeats frames. ``fps`` is scaled so the duration is unchanged.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    idx = np.rint(np.linspace(0, video.num_frames - 1, num_frames)).astype(np.int64)
    return Video(video.frames[idx], video.fps * num_frames / video.num_frames)


def resample_fps(video: Video, fps: float) -> Video:
    """Resample in time to ``fps`` by nearest-frame selection (no interpolation).

    Output frame ``i`` (at time ``i / fps``) is the source frame on screen at that time,
    i.e. source index ``floor(i * video.fps / fps)``. The frame count is
    ``round(duration * fps)`` (at least 1), so the duration is kept up to one frame.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    n = max(1, round(video.duration * fps))
    idx = np.floor(np.arange(n) * (video.fps / fps) + 1e-6).astype(np.int64)
    return Video(video.frames[np.minimum(idx, video.num_frames - 1)], float(fps))


def _palette_quantize(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map RGB frames to indices into one shared 256-colour palette (most frequent colours)."""
    bins = (frames >> 3).astype(np.int32)  # 5 bits per channel
    keys = (bins[..., 0] << 10) | (bins[..., 1] << 5) | bins[..., 2]
    counts = np.bincount(keys.ravel(), minlength=1 << 15)
    top = np.argsort(counts)[::-1][:256]
    top = top[counts[top] > 0]
    palette = np.stack([top >> 10, (top >> 5) & 31, top & 31], axis=1) * 8 + 4
    used = np.flatnonzero(counts)
    used_rgb = np.stack([used >> 10, (used >> 5) & 31, used & 31], axis=1) * 8 + 4
    lut = np.zeros(1 << 15, dtype=np.uint8)
    for s in range(0, len(used), 4096):  # nearest palette entry for every bin in use
        d = ((used_rgb[s : s + 4096, None, :] - palette[None]) ** 2).sum(-1)
        lut[used[s : s + 4096]] = d.argmin(1)
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[:, 0] = 255
    argb[: len(palette), 1:] = palette
    return lut[keys], argb


def write_gif(path: str | os.PathLike[str], video: Video, max_frames: int = 16) -> Path:
    """Write an animated GIF thumbnail (PyAV ``gif`` encoder, shared adaptive palette).

    Clips longer than ``max_frames`` are subsampled with :func:`sample_frames`, keeping
    the playback duration. The write is atomic; returns ``path``.
    """
    if video.num_frames > max_frames:
        video = sample_frames(video, max_frames)
    indices, palette = _palette_quantize(video.frames)
    with _atomic_output(path) as tmp, av.open(str(tmp), "w", format="gif") as out:
        stream = out.add_stream("gif", rate=_rate(video.fps))
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "pal8"
        for image in indices:
            frame = av.VideoFrame.from_ndarray((image, palette), format="pal8")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Path(path)


def write_png_strip(path: str | os.PathLike[str], video: Video, num_frames: int = 8) -> Path:
    """Write ``num_frames`` uniformly sampled frames side by side as one PNG.

    The image is ``H`` x ``num_frames * W``. The write is atomic; returns ``path``.
    """
    strip = np.concatenate(list(sample_frames(video, num_frames).frames), axis=1)
    ok, data = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with _atomic_output(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return Path(path)


def _check_tensor_args(layout: str, value_range: ValueRange) -> tuple[float, float]:
    if layout not in _PERMUTE_FROM_THWC:
        raise ValueError(f"layout must be 'TCHW' or 'CTHW', got {layout!r}")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    return lo, hi


def to_tensor(
    video: Video, layout: Layout = "TCHW", value_range: ValueRange = (-1.0, 1.0)
) -> torch.Tensor:
    """Convert to a float32 tensor in ``layout`` (``TCHW`` or ``CTHW``), values mapped
    linearly from [0, 255] to ``value_range`` (typically (-1, 1) or (0, 1))."""
    import torch

    lo, hi = _check_tensor_args(layout, value_range)
    x = torch.from_numpy(video.frames).to(torch.float32) * ((hi - lo) / 255.0) + lo
    return x.permute(*_PERMUTE_FROM_THWC[layout]).contiguous()


def from_tensor(
    tensor: torch.Tensor,
    layout: Layout = "TCHW",
    value_range: ValueRange = (-1.0, 1.0),
    *,
    fps: float,
) -> Video:
    """Inverse of :func:`to_tensor`: clamp to ``value_range``, scale to [0, 255], round.

    Accepts one video (4-D) or a batch holding exactly one video (5-D, ``B == 1``).
    """
    import torch

    lo, hi = _check_tensor_args(layout, value_range)
    if tensor.ndim == 5:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one video, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 4:
        raise ValueError(f"expected a 4-D {layout} tensor, got shape {tuple(tensor.shape)}")
    x = tensor.detach().to("cpu").float().permute(*_PERMUTE_TO_THWC[layout])
    if x.shape[-1] != 3:
        raise ValueError(f"expected 3 channels in {layout} tensor, got shape {tuple(tensor.shape)}")
    x = ((x.clamp(lo, hi) - lo) * (255.0 / (hi - lo))).round().clamp(0, 255)
    return Video(x.to(torch.uint8).contiguous().numpy(), fps)


def stack_videos(
    videos: Sequence[Video], layout: Layout = "TCHW", value_range: ValueRange = (-1.0, 1.0)
) -> torch.Tensor:
    """Stack same-shape videos into a ``(B, *layout)`` float tensor (see :func:`to_tensor`)."""
    import torch

    if not videos:
        raise ValueError("stack_videos needs at least one video")
    ref = videos[0].frames.shape
    for i, v in enumerate(videos[1:], start=1):
        if v.frames.shape != ref:
            raise ValueError(
                f"video {i} has shape (T, H, W, C) = {v.frames.shape}, but video 0 has {ref}"
            )
    return torch.stack([to_tensor(v, layout, value_range) for v in videos])
