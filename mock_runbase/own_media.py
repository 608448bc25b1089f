"""Your own media: files of ``--media-dir`` that a rule's ``effect.media`` makes a run serve.

A name is a path relative to the directory (``cat.png``, ``pets/cat.png``); anything that
leads outside it (``../x``, an absolute path, a symbolic link out) is refused, like a missing
file, a kind of file the mock does not serve, or a file that is not what its name says (read
with Pillow for images, PyAV for videos); the mock's rules name the files the directory held
when it started (its control document lists them). A file is read when a rule names it and again
whenever it changes (its size or modification time): a run reports the size the file had
when the run was created, and its download serves the file's bytes as they are.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["MEDIA_TYPES", "MediaDirectory", "MediaError", "MediaFile", "kind_of"]

# extension -> (kind of model it stands in for, Content-Type, what Pillow or PyAV calls it)
MEDIA_TYPES: dict[str, tuple[str, str, str]] = {
    "png": ("image", "image/png", "PNG"),
    "jpg": ("image", "image/jpeg", "JPEG"),
    "jpeg": ("image", "image/jpeg", "JPEG"),
    "webp": ("image", "image/webp", "WEBP"),
    "mp4": ("video", "video/mp4", "mp4"),
}
ALLOWED = ", ".join(f".{extension}" for extension in MEDIA_TYPES)
MAX_NAMES_SHOWN = 10


class MediaError(ValueError):
    """A name that is no file the mock can serve; the message says why and what is allowed."""


def extension_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def kind_of(name: str) -> str | None:
    """``image`` or ``video`` by the name's extension; None for one the mock does not serve."""
    known = MEDIA_TYPES.get(extension_of(name))
    return known[0] if known else None


def media_type(name: str) -> str:
    return MEDIA_TYPES[extension_of(name)][1]


@dataclass(frozen=True)
class MediaFile:
    name: str  # as the rule gave it
    path: Path
    kind: str
    extension: str
    media_type: str
    width: int
    height: int
    version: tuple[int, int]  # (size, modification time in ns): a new one when the file changes

    @property
    def cache_key(self) -> str:
        size, modified = self.version
        return f"own:{self.name}:{size}:{modified}"


class MediaDirectory:
    """``--media-dir`` (``root`` None: none given), and what its files are, read once per
    version of each file. ``listed``: only the files it held when made may be named (the
    mock's, whose control document lists them)."""

    def __init__(self, root: Path | None, *, listed: bool = False) -> None:
        self.root = root.resolve() if root is not None else None
        self._known: dict[str, MediaFile] = {}
        self._lock = threading.Lock()  # files are probed in worker threads
        self.listed = tuple(self.names()) if listed else None

    def file(self, name: str) -> MediaFile:
        """The file ``name`` names, probed (or as probed before, if unchanged)."""
        path = self.path_of(name)
        try:
            stat = path.stat()
        except OSError:
            raise MediaError(self.missing(name)) from None
        if not path.is_file():
            raise MediaError(f"{name!r} is a directory in --media-dir {self.root}, not a file")
        if self.listed is not None and name not in self.listed:
            raise MediaError(self.unlisted(name))
        version = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(name)
        if known is not None and known.version == version:
            return known
        probed = probe(name, path, version)
        with self._lock:
            self._known[name] = probed
        return probed

    def path_of(self, name: str) -> Path:
        if self.root is None:
            raise MediaError(
                f"{name!r} names a file of --media-dir, and the mock was started without one: "
                "start it with --media-dir DIR (MOCK_RUNBASE_MEDIA_DIR)"
            )
        parts = PurePosixPath(name).parts
        if not parts or name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
            raise MediaError(self.outside(name))
        if kind_of(name) is None:
            raise MediaError(f"{name!r} is not a kind of file the mock serves: use {ALLOWED}")
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise MediaError(self.outside(name))
        return path

    def outside(self, name: str) -> str:
        return (
            f"{name!r} is outside --media-dir {self.root}: name a file in it by its path "
            "relative to it (cat.png, pets/cat.png), without .. or a leading /"
        )

    def missing(self, name: str) -> str:
        return f"no file {name!r} in --media-dir {self.root} (it has {listing(self.names())})"

    def unlisted(self, name: str) -> str:
        return (
            f"{name!r} is not one of the files --media-dir {self.root} held when the mock "
            f"started ({listing(self.listed or ())}), which the served control document lists: "
            "name one of them, or restart the mock to serve a file added since"
        )

    def names(self) -> list[str]:
        """The files the mock could serve, by their names relative to the directory."""
        if self.root is None:
            return []
        found = []
        for folder, _, files in os.walk(self.root):
            for file in files:
                relative = (Path(folder) / file).relative_to(self.root).as_posix()
                if kind_of(relative) is not None:
                    found.append(relative)
        return sorted(found)


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN]) or f"no {ALLOWED} file"
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    return shown + more


def probe(name: str, path: Path, version: tuple[int, int]) -> MediaFile:
    extension = extension_of(name)
    kind, content_type, expected = MEDIA_TYPES[extension]
    width, height = image_size(name, path, expected) if kind == "image" else video_size(name, path)
    if width <= 0 or height <= 0:
        raise MediaError(f"{name!r} has no pixels ({width}x{height})")
    return MediaFile(name, path, kind, extension, content_type, width, height, version)


def image_size(name: str, path: Path, expected: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found, size = image.format, image.size
    except (UnidentifiedImageError, OSError):
        raise MediaError(f"{name!r} is not a {expected} image (Pillow cannot read it)") from None
    if found != expected:
        raise MediaError(f"{name!r} is a {found} image, not {expected} as its name says")
    return size


def video_size(name: str, path: Path) -> tuple[int, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if "mp4" not in container.format.name.split(","):
                raise MediaError(f"{name!r} is {container.format.name}, not an MP4 video")
            if not container.streams.video:
                raise MediaError(f"{name!r} has no video stream")
            context = container.streams.video[0].codec_context
            return context.width, context.height
    except av.error.FFmpegError:
        raise MediaError(f"{name!r} is not an MP4 video (PyAV cannot read it)") from None
