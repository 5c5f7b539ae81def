"""The products folder, served read-only under `/products/`, and links to its files.

Actions record the files they wrote as the path they were given (`tracerules-out/lvk/...`,
relative to wherever the service or the dry run ran, or absolute). The dashboard links such a
name to the same file under the products folder it serves. Only regular files inside that
folder are served: no `..`, no symbolic link out of it, no directory listings. A product may
hold text from a notice, so it is sent as an image, as JSON or as plain text (never as a page
that could run a script), under a sandboxing content security policy.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

PREFIX: Final = "/products/"
MEDIA_TYPES: Final = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".json": "application/json",
    ".xml": "text/plain; charset=utf-8",  # shown as text: an XML page could carry a script
    ".yaml": "text/plain; charset=utf-8",
    ".yml": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}
DOWNLOAD: Final = "application/octet-stream"  # FITS, archives and anything unknown
SANDBOX: Final = {"content-security-policy": "sandbox; default-src 'none'; img-src 'self'"}


def inside(root: Path, relative: str) -> Path | None:
    """The regular file `relative` names under `root`, or None when it is not one of them."""
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] == "/" or ".." in parts or "\\" in relative or "\0" in relative:
        return None
    base = root.resolve()
    target = (base / Path(*parts)).resolve()  # follows links: one pointing out is refused
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def locate(recorded: str, root: Path) -> str | None:
    """Where a recorded product file lies under `root`, as a relative POSIX path, or None.

    An absolute name (or one relative to this process's folder) is taken as it is; failing
    that, the shortest tail of the name that is a file under `root` (the name was recorded
    relative to the folder the producing process ran in).
    """
    path = Path(recorded)
    base = root.resolve()
    try:
        rel = (Path.cwd() / path).resolve().relative_to(base)
    except (ValueError, OSError):
        rel = None
    if rel is not None and rel.parts and inside(root, rel.as_posix()):
        return rel.as_posix()
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for start in range(len(parts)):
        tail = PurePosixPath(*parts[start:]).as_posix()
        if inside(root, tail):
            return tail
    return None


class Products:
    """One products folder: the links the pages show and the files the server sends."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def href(self, recorded: str) -> str | None:
        """The dashboard's link to a recorded product file, or None (not in the folder)."""
        if self.root is None:
            return None
        rel = locate(recorded, self.root)
        return None if rel is None else PREFIX + quote(rel)

    def serve(self, request: Request) -> Response:
        target = None if self.root is None else inside(self.root, request.path_params["path"])
        if target is None:
            return PlainTextResponse("404: no such product file\n", status_code=404)
        media = MEDIA_TYPES.get(target.suffix.lower())
        if media is None:
            return FileResponse(target, media_type=DOWNLOAD, headers=SANDBOX, filename=target.name)
        return FileResponse(target, media_type=media, headers=SANDBOX)
