"""Real videos for results: short, playable H.264 MP4 files made with PyAV, rendered lazily and cached.

Every frame shows the background (a seeded gradient, or the fetched input image for image-to-video),
a bar sweeping across, a progress strip and the current shot's prompt, so consecutive frames differ
visibly. With ``generate_audio`` the file also has a quiet AAC tone track.
"""

from __future__ import annotations

import math
import os
import tempfile
from array import array
from dataclasses import dataclass, field
from fractions import Fraction

from PIL import Image, ImageDraw, ImageOps

from .images import decode_input, draw_prompt, gradient

CONTENT_TYPE = "video/mp4"
AUDIO_RATE = 24_000
_AUDIO_CHUNK = 1024  # samples per AAC frame


@dataclass(frozen=True)
class VideoSpec:
    """Everything that determines a video's bytes (``background``: the fetched input image, if any)."""

    shots: tuple[str, ...]
    seed: int
    width: int
    height: int
    duration: int
    fps: int
    audio: bool
    model: str
    generation_id: str
    index: int = 0
    background: bytes | None = field(default=None, repr=False)

    @property
    def frame_count(self) -> int:
        return self.duration * self.fps

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE

    @property
    def filename(self) -> str:
        return f"video-{self.index}.mp4"

    def render(self) -> bytes:
        return render_video(self)


def _backdrop(spec: VideoSpec) -> Image.Image:
    if spec.background is not None:
        # The reference image fills the frame (cropped to the aspect ratio): it is the first frame.
        return ImageOps.fit(decode_input(spec.background), (spec.width, spec.height))
    return gradient(f"{spec.shots}\0{spec.seed}\0{spec.generation_id}", spec.width, spec.height)


def _frames(spec: VideoSpec) -> list[Image.Image]:
    backdrop = _backdrop(spec)
    total = spec.frame_count
    shot_frames = max(1, math.ceil(total / len(spec.shots)))
    bar_width = max(4, spec.width // 16)
    frames: list[Image.Image] = []
    for number in range(total):
        frame = backdrop.copy()
        if number:
            # Frame 0 is the backdrop as is (for image-to-video: the input image); then a bar sweeps
            # across and a strip along the bottom shows how far the clip is.
            draw = ImageDraw.Draw(frame)
            left = round((spec.width - bar_width) * number / max(1, total - 1))
            draw.rectangle((left, 0, left + bar_width - 1, spec.height - 1), fill=(255, 255, 255))
            strip = max(3, spec.height // 40)
            progress = round(spec.width * (number + 1) / total)
            draw.rectangle((0, spec.height - strip, progress, spec.height - 1), fill=(255, 64, 64))
            shot = min(len(spec.shots) - 1, number // shot_frames)
            seconds = number / spec.fps
            draw_prompt(
                frame,
                spec.shots[shot],
                f"{spec.model} · shot {shot + 1}/{len(spec.shots)} · {seconds:.3f}s · seed {spec.seed}",
                scale=12,
            )
        frames.append(frame)
    return frames


def _tone(spec: VideoSpec) -> array[float]:
    """A quiet sine tone, its pitch derived from the seed, with a one-second pulse."""
    pitch = 220.0 + spec.seed % 440
    count = spec.duration * AUDIO_RATE
    step = 2 * math.pi * pitch / AUDIO_RATE
    pulse = 2 * math.pi / AUDIO_RATE
    return array("f", (0.1 * math.sin(step * i) * (0.5 + 0.5 * math.cos(pulse * i)) for i in range(count)))


def render_video(spec: VideoSpec) -> bytes:
    """Encode the clip: H.264 (yuv420p) at ``fps``, exactly ``duration * fps`` frames, MP4 with the
    index up front (faststart); deterministic for the spec. CPU-bound: run it off the event loop."""
    # faststart rewrites the file to move the index up front, which needs a real file, not a buffer.
    with tempfile.TemporaryDirectory(prefix="oxen-emulator-video-") as folder:
        path = os.path.join(folder, spec.filename)
        _encode(spec, path)
        with open(path, "rb") as written:
            return written.read()


def _encode(spec: VideoSpec, path: str) -> None:
    import av  # the emulator extra's PyAV; imported here so image-only use never needs it

    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=spec.fps)
        video.width = spec.width
        video.height = spec.height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, spec.fps)
        # Deterministic, single-threaded and quick; no B-frames keeps the frame count obvious to any reader.
        video.codec_context.options = {"preset": "ultrafast", "bf": "0", "threads": "1"}
        audio = None
        if spec.audio:
            audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for number, image in enumerate(_frames(spec)):
            frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            frame.pts = number
            frame.time_base = Fraction(1, spec.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples = _tone(spec)
            for start in range(0, len(samples), _AUDIO_CHUNK):
                chunk = samples[start : start + _AUDIO_CHUNK]
                sound = av.AudioFrame(format="flt", layout="mono", samples=len(chunk))
                sound.planes[0].update(chunk.tobytes())
                sound.sample_rate = AUDIO_RATE
                sound.pts = start
                sound.time_base = Fraction(1, AUDIO_RATE)
                container.mux(audio.encode(sound))
            container.mux(audio.encode(None))
