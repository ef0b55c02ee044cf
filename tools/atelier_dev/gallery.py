"""A static index.html that shows each original beside its renders (and why a file was rejected)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from atelier.imaging import styles
from atelier.imaging.decode import decode
from atelier.imaging.encode import encode


@dataclass
class Tile:
    """One render (or one failure) of one photo."""

    style: str
    path: str = ""  # relative to the gallery folder
    note: str = ""  # size, time, or the reason it was rejected
    failed: bool = False


@dataclass
class Entry:
    """A photo and its renders."""

    name: str
    original: str = ""  # relative path, empty when the original cannot be shown
    tiles: list[Tile] = field(default_factory=list)


_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:1rem;
  background:#faf8f4;color:#222}
h1{font-weight:600}h2{font-size:1.05rem;margin:1.5rem 0 .5rem;word-break:break-all}
.row{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:.75rem}
figure{margin:0;background:#fff;border:1px solid #e4e0d8;border-radius:6px;padding:.4rem}
figure img{width:100%;height:220px;object-fit:contain;background:#f1eee8;display:block}
figcaption{font-size:.85rem;margin-top:.3rem}figcaption b{text-transform:capitalize}
.failed{border-color:#d33;background:#fff4f4}.failed figcaption{color:#a00}.note{color:#666}
"""


def write(folder: Path, entries: list[Entry], title: str = "Atelier", notice: str = "") -> Path:
    """Write ``folder/index.html`` and return its path."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notice:
        parts.append(f"<p class='note'>{html.escape(notice)}</p>")
    for entry in entries:
        parts.append(f"<h2>{html.escape(entry.name)}</h2><div class='row'>")
        if entry.original:
            parts.append(_figure("original", entry.original, ""))
        for tile in entry.tiles:
            parts.append(_figure(tile.style, tile.path, tile.note, tile.failed))
        parts.append("</div>")
    parts.append("</body></html>")
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def _figure(label: str, path: str, note: str, failed: bool = False) -> str:
    img = ""
    if path:
        src = html.escape(path, quote=True)
        img = f"<a href='{src}'><img src='{src}' alt='{html.escape(label)}' loading='lazy'></a>"
    cls = " class='failed'" if failed else ""
    caption = f"<b>{html.escape(label)}</b>"
    if note:
        caption += f"<br><span class='note'>{html.escape(note)}</span>"
    return f"<figure{cls}>{img}<figcaption>{caption}</figcaption></figure>"


EXAMPLE_WIDTH = 240
EXAMPLES_INDEX = "index.json"  # style -> the style version each example was made with


def write_examples(photo: Path, out_dir: Path) -> list[Path]:
    """An example of each CPU style for the web page's style choice: ``photo`` rendered at its own size,
    then reduced to EXAMPLE_WIDTH px as WebP, with the versions that made them (so a stale one shows)."""
    bgr = decode(photo.read_bytes()).bgr
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in styles.CPU_STYLES:
        art = styles.get(name).render(bgr)
        height = round(art.shape[0] * EXAMPLE_WIDTH / art.shape[1])
        small = cv2.resize(art, (EXAMPLE_WIDTH, height), interpolation=cv2.INTER_AREA)
        path = out_dir / f"{name}.webp"
        path.write_bytes(encode(small, "webp", quality=80))
        written.append(path)
    versions = {name: styles.get(name).version for name in styles.CPU_STYLES}
    (out_dir / EXAMPLES_INDEX).write_text(json.dumps(versions, indent=2) + "\n")
    return written
