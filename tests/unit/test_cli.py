"""The `atelier` command: stylize, inspect, upscale, run as a user would (through main)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from atelier.inference import models
from atelier_dev import cli
from atelier_dev.models.cli import main as models_main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    assert (
        models_main(["--cache", str(root), "build-dev", "--only", "animeganv2-dev", "edsr_baseline_x2-dev"])
        == 0
    )
    return root


def test_stylize_writes_every_style_a_gallery_and_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli.main(
        ["stylize", str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "coffee.png"), "-o", str(out), "--gallery"]
    )
    assert code == 0
    for stem, ext in (("chelsea", "jpg"), ("coffee", "png")):
        for style in ("sketch", "pencil", "oil", "watercolor"):
            img = cv2.imread(str(out / f"{stem}.{style}.{ext}"))
            assert img is not None and img.shape[:2] == cv2.imread(str(SAMPLES / f"{stem}.{ext}")).shape[:2]
    index = (out / "index.html").read_text()
    assert "originals/chelsea.jpg" in index and "coffee.watercolor.png" in index
    printed = capsys.readouterr().out
    assert "chelsea.jpg" in printed and "watercolor" in printed and "451x300" in printed


def test_stylize_exits_non_zero_and_says_why_per_rejected_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    half = tmp_path / "half.jpg"
    data = (SAMPLES / "chelsea.jpg").read_bytes()
    half.write_bytes(data[: len(data) // 2])
    code = cli.main(
        ["stylize", str(bad), str(half), str(SAMPLES / "chelsea.jpg"), "-s", "sketch", "-o", str(tmp_path)]
    )
    assert code == 1
    text = capsys.readouterr()
    printed = " ".join((text.out + text.err).split())
    assert "unsupported_format" in printed and "corrupt" in printed and "2 of 3 file(s) rejected" in printed
    assert (tmp_path / "chelsea.sketch.jpg").exists()  # the good file still rendered


def test_stylize_rejects_an_unknown_style(tmp_path: Path) -> None:
    assert cli.main(["stylize", str(SAMPLES / "chelsea.jpg"), "-s", "cubism", "-o", str(tmp_path)]) == 2


def test_inspect_reads_headers_and_prints_the_phash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.png"
    from tests import imaging

    bomb.write_bytes(imaging.png_header_only(50_000, 50_000))
    code = cli.main(["inspect", str(SAMPLES / "rocket.webp"), str(bomb)])
    assert code == 1
    printed = " ".join(capsys.readouterr().out.split())
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLES / "rocket.webp")), cv2.COLOR_BGR2RGB)
    assert str(imagehash.phash(Image.fromarray(rgb))) in printed
    assert "webp" in printed and "640" in printed and "427" in printed and "too_many_pixels" in printed


def test_stylize_anime_with_the_dev_model_says_it_is_untrained(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(model_dir))
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), cv2.resize(cv2.imread(str(SAMPLES / "chelsea.jpg")), (300, 60)))
    code = cli.main(
        ["stylize", str(wide), "-s", "anime", "--model", "animeganv2-dev", "-o", str(tmp_path / "o")]
    )
    assert code == 0
    out = cv2.imread(str(tmp_path / "o" / "wide.anime.png"))
    assert out.shape[:2] == (60, 300)  # the aspect kept: no square crop
    assert "untrained" in " ".join(capsys.readouterr().out.split())


def test_upscale_runs_the_tiled_path_and_matches_whole_image(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(model_dir))
    src = tmp_path / "small.png"
    cv2.imwrite(str(src), cv2.resize(cv2.imread(str(SAMPLES / "chelsea.jpg")), (90, 61)))
    tiled, whole = tmp_path / "tiled.png", tmp_path / "whole.png"
    assert cli.main(["upscale", str(src), "--scale", "2", "--tile", "32", "-o", str(tiled)]) == 0
    assert cli.main(["upscale", str(src), "--scale", "2", "--tile", "0", "-o", str(whole)]) == 0
    a, b = cv2.imread(str(tiled)), cv2.imread(str(whole))
    assert a.shape == (122, 180, 3) and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_upscale_without_a_model_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(tmp_path / "empty"))
    assert not models.installed_path("edsr_baseline_x3-dev").exists()
    assert (
        cli.main(["upscale", str(SAMPLES / "chelsea.jpg"), "--scale", "3", "-o", str(tmp_path / "x.png")])
        == 2
    )
    shutil.rmtree(tmp_path / "empty", ignore_errors=True)


def test_the_web_pages_style_examples_are_current() -> None:
    """web/examples/ holds one example per CPU style, made by `atelier examples` with today's styles."""
    import json

    import cv2
    import numpy as np

    from atelier.imaging import styles
    from atelier_dev import gallery

    folder = Path(__file__).resolve().parents[2] / "web" / "examples"
    made_with = json.loads((folder / gallery.EXAMPLES_INDEX).read_text())
    current = {name: styles.get(name).version for name in styles.CPU_STYLES}
    assert made_with == current, "a style changed: run `atelier examples` and commit web/examples/"
    for name in styles.CPU_STYLES:
        img = cv2.imdecode(np.frombuffer((folder / f"{name}.webp").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] == gallery.EXAMPLE_WIDTH
