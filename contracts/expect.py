"""Checks the properties share. Each one raises a ``ContractViolation`` that shows the rule,
what was received next to what is documented, and a curl command for the exchange."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import av

from .facts import Operation, Price, facts
from .registry import violation
from .target import NOT_JSON, Exchange, Target

__all__ = [
    "conforms",
    "created",
    "error",
    "error_shape",
    "finished",
    "media_of_catalog",
    "mp4_video",
    "png_size",
    "run_body",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LENGTH_TOLERANCE_S = 0.1  # a clip's length is whole frames: 1/fps may not divide it
FPS_TOLERANCE = 0.01  # relative: 23.976 is not 24


def conforms(exchange: Exchange, operation: Operation) -> None:
    """A documented status, and a body that matches the spec's schema for it."""
    if exchange.status not in operation.statuses:
        raise violation(
            f"{operation.method.upper()} {operation.path} answered an undocumented status",
            received=exchange.shown(),
            documented=f"one of {sorted(operation.statuses)}",
            curl=exchange.curl(),
        )
    if exchange.status in operation.validators:
        problems = facts().validate(operation, exchange.status, exchange.data)
        if exchange.data is NOT_JSON:
            problems = ["the body is not JSON"]
        if problems:
            raise violation(
                f"{exchange.status} body of {operation.id} does not match the spec",
                received=exchange.shown() + "\n              " + "; ".join(problems[:3]),
                documented=f"the {exchange.status} response schema of {operation.id}",
                curl=exchange.curl(),
            )


def error_shape(exchange: Exchange) -> None:
    """``{"error": {"message": <non-empty>, "code": <non-empty>}}``."""
    data = exchange.data
    inner = data.get("error") if isinstance(data, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    if not (isinstance(message, str) and message and isinstance(code, str) and code):
        raise violation(
            "error body without a non-empty message and code",
            received=exchange.shown(),
            documented='{"error": {"message": "<non-empty>", "code": "<non-empty>"}}',
            curl=exchange.curl(),
        )


def error(exchange: Exchange, operation: Operation, code: str) -> None:
    """Exactly the documented status and code, in the documented body."""
    status = operation.codes[code]
    if exchange.status != status or exchange.code != code:
        raise violation(
            f"expected {status} {code}",
            received=exchange.shown(),
            documented=f'{status} {{"error": {{"message": "...", "code": "{code}"}}}}',
            curl=exchange.curl(),
        )
    error_shape(exchange)
    conforms(exchange, operation)


def run_body(exchange: Exchange, operation: Operation) -> dict[str, Any]:
    """A 2xx run body that conforms to the spec."""
    success = operation.success_statuses()
    if exchange.status not in success:
        raise violation(
            f"{operation.id} was not answered with a run",
            received=exchange.shown(),
            documented=f"{' or '.join(map(str, sorted(success)))} with the run",
            curl=exchange.curl(),
        )
    conforms(exchange, operation)
    body: dict[str, Any] = exchange.data
    return body


def created(exchange: Exchange, price: Price) -> dict[str, Any]:
    """A run created at once: ``pending``, the catalog's ``costUsd``, the model asked for."""
    run = run_body(exchange, facts().create)
    assert price.model is not None
    expected = {"status": "pending", "costUsd": price.micro_usd, "model": price.model.id}
    got = {k: run.get(k) for k in expected}
    if got != expected:
        raise violation(
            "created run differs from the catalog",
            received=str(got),
            documented=f"{expected} (input with defaults: {price.full_input})",
            curl=exchange.curl(),
        )
    return run


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None if the bytes are not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@dataclass(frozen=True)
class Video:
    """An MP4's first video track (its first frame decoded), and whether it has a sound track."""

    width: int
    height: int
    seconds: float
    fps: float
    audio: bool
    codec: str

    def __str__(self) -> str:
        sound = "with" if self.audio else "without"
        return (
            f"a {self.width}x{self.height} {self.codec} MP4 of {self.seconds:.3f} s at "
            f"{self.fps:g} fps, {sound} audio"
        )


def mp4_video(data: bytes) -> Video | None:
    """The first video track of an MP4, or None if the bytes are not an MP4 whose first video
    frame decodes. Its length is the track's own (the sound track may run a little longer)."""
    if data[4:8] != b"ftyp":
        return None
    try:
        with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            frame = next(container.decode(stream), None)
            if frame is None:
                return None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
            rate = stream.average_rate or stream.guessed_rate
            return Video(
                width=frame.width,
                height=frame.height,
                seconds=seconds,
                fps=float(rate) if rate else 0.0,
                audio=bool(container.streams.audio),
                codec=stream.codec_context.name,
            )
    except (av.FFmpegError, OSError, ValueError):
        return None


def media_of_catalog(file: Exchange, price: Price) -> None:
    """An output file as the catalog describes it: for an image model a PNG of its pixel
    size; for a video model an MP4 of its frame size, length (to 0.1 s) and frame rate, with
    a sound track exactly when the catalog says."""
    model, full_input = price.model, price.full_input
    assert model is not None and full_input is not None
    width, height = model.output_size(full_input)
    fetched = f"GET {file.url} -> {file.status} {file.headers.get('content-type')}"
    described = f"for {model.id} {full_input}"
    if model.kind == "image":
        size = png_size(file.body) if file.status == 200 else None
        if size != (width, height):
            got = f"a {size[0]}x{size[1]} PNG" if size else f"not a PNG: {file.shown()[:120]}"
            raise violation(
                f"output image is {got}",
                received=f"{fetched}, {got}",
                documented=f"a {width}x{height} PNG {described}",
                curl=file.curl(),
            )
        return
    seconds, fps = model.duration_s(full_input), model.fps(full_input)
    audio = model.has_audio(full_input)
    video = mp4_video(file.body) if file.status == 200 else None
    wrong = video_differences(video, (width, height), seconds, fps, audio)
    if wrong:
        got = str(video) if video else f"not an MP4 with a video track: {file.shown()[:120]}"
        raise violation(
            f"output video differs from the catalog: {', '.join(wrong)}",
            received=f"{fetched}, {got}",
            documented=f"a {width}x{height} MP4 of {seconds:g} s (to {LENGTH_TOLERANCE_S} s) at "
            f"{fps} fps, {'with' if audio else 'without'} audio, {described}",
            curl=file.curl(),
        )


def video_differences(
    video: Video | None, size: tuple[int, int], seconds: float, fps: float, audio: bool
) -> list[str]:
    """What of the video is not as the catalog says (empty: all is)."""
    if video is None:
        return ["not an MP4 with a video track"]
    checks = {
        "frame size": (video.width, video.height) != size,
        "length": round(abs(video.seconds - seconds), 6) > LENGTH_TOLERANCE_S,
        "frame rate": abs(video.fps - fps) > FPS_TOLERANCE * fps,
        "sound track": video.audio != audio,
    }
    return [what for what, differs in checks.items() if differs]


def finished(target: Target, run: dict[str, Any], key: str, steps: list[float]) -> list[Exchange]:
    """The polls of a run up to its terminal state; a run that never ends is a violation. A
    model the catalog says takes longer than ``--run-timeout`` (a video) gets twice its time."""
    model = facts().catalog.get(run["model"])
    typical = (model.timing.pending_ms + model.timing.processing_ms) / 1000 if model else 0.0
    timeout = max(target.run_timeout, 2 * typical)
    polls = target.poll(run["id"], key, steps, timeout=timeout)
    last = run_body(polls[-1], facts().get)
    if last["status"] not in ("succeeded", "failed"):
        raise violation(
            f"run did not finish within {timeout:g} s",
            received=polls[-1].shown(),
            documented="runs finish (succeeded or failed); "
            f"{run['model']} typically within {typical:g} s",
            curl=polls[-1].curl(),
        )
    return polls
