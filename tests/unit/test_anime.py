"""The anime core: layouts, sizes and aspect ratios, decoded inputs, one session per process, model files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from atelier.imaging.decode import decode
from atelier.inference import anime, sessions
from atelier_dev.models import animegan


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("anime")
    paths = {}
    for layout in ("NCHW", "NHWC"):
        path = folder / f"{layout}.onnx"
        onnx.save(animegan.build(seed=3, layout=layout), str(path))
        paths[layout] = path
    return paths


@pytest.fixture(scope="module")
def nchw(model_files: dict[str, Path]) -> anime.AnimeModel:
    return anime.AnimeModel(model_files["NCHW"], threads=1)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_both_layouts_give_the_same_picture(model_files: dict[str, Path]) -> None:
    img = _image(64, 96)
    a = anime.AnimeModel(model_files["NCHW"], threads=1)
    b = anime.AnimeModel(model_files["NHWC"], threads=1, layout="NHWC", size_multiple=4)
    assert (a.layout, b.layout) == ("NCHW", "NHWC")
    out_a, out_b = a.stylize(img), b.stylize(img)
    assert out_a.shape == out_b.shape == img.shape and out_a.dtype == np.uint8
    assert anime.psnr(out_a, out_b) > 45
    assert a.trained is False


def test_layout_and_multiple_come_from_the_model(model_files: dict[str, Path]) -> None:
    b = anime.AnimeModel(model_files["NHWC"], threads=1)
    assert (b.layout, b.size_multiple) == ("NHWC", 32)
    out = b.stylize(_image(40, 72))
    assert out.shape == (40, 72, 3)


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((1, 1), 1024, (1, 1)),
        ((3, 500), 1024, (3, 500)),
        ((2000, 40), 1024, (1024, 20)),
        ((37, 91), 1024, (37, 91)),
        ((90, 130), 64, (44, 64)),
    ],
)
def test_output_size_and_aspect(nchw: anime.AnimeModel, shape, max_side, expected) -> None:
    out = nchw.stylize(_image(*shape), max_side=max_side)
    assert out.shape[:2] == expected
    h, w = shape
    assert abs(out.shape[1] / out.shape[0] - w / h) <= max(w / h, h / w) * 0.06 or min(expected) == 1


def test_working_size_is_capped_and_rounded() -> None:
    for h, w, cap, m in [(1000, 3000, 1024, 4), (512, 512, 1024, 32), (7, 5, 1024, 4), (2000, 40, 1024, 32)]:
        wh, ww = anime.working_size(h, w, cap, m)
        assert wh % m == 0 and ww % m == 0
        assert max(wh, ww) <= cap and min(wh, ww) >= anime.MIN_SIDE
    assert anime.working_size(512, 512, 1024, 4) == (512, 512)
    assert anime.working_size(1000, 3000, 1024, 4) == (340, 1024)


def test_grey_and_16_bit_png_inputs(nchw: anime.AnimeModel) -> None:
    grey = (np.arange(48 * 80) % 256).astype(np.uint8).reshape(48, 80)
    deep = (np.arange(48 * 80 * 3) * 37 % 65536).astype(np.uint16).reshape(48, 80, 3)
    for img in (grey, deep):
        ok, png = cv2.imencode(".png", img)
        assert ok
        decoded = decode(png.tobytes())
        assert decoded.bgr.dtype == np.uint8 and decoded.bgr.shape == (48, 80, 3)
        out = nchw.stylize(decoded.bgr)
        assert out.shape == (48, 80, 3) and out.dtype == np.uint8


def test_rejects_non_bgr8(nchw: anime.AnimeModel) -> None:
    with pytest.raises(ValueError):
        nchw.stylize(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        nchw.stylize(np.zeros((8, 8, 3), np.uint16))


def test_session_is_built_once(model_files: dict[str, Path]) -> None:
    anime.clear_cache()
    before = anime.SESSIONS_CREATED
    first = anime.load_model(model_files["NCHW"], threads=1)
    for _ in range(3):
        assert anime.load_model(model_files["NCHW"], threads=1) is first
        first.stylize(_image(32, 32))
    assert before + 1 == anime.SESSIONS_CREATED
    other = anime.load_model(model_files["NHWC"], threads=1)
    assert other is not first and before + 2 == anime.SESSIONS_CREATED


def test_shared_arena_sized_by_max_side(model_files: dict[str, Path]) -> None:
    assert sessions.arena_bytes(512) == 512 * 512 * sessions.ARENA_BYTES_PER_PIXEL
    assert sessions.arena_bytes(8) == 64 << 20 and sessions.arena_bytes(4096) == 2**31 - 1
    a = anime.AnimeModel(model_files["NCHW"], threads=1)
    b = anime.AnimeModel(model_files["NCHW"], threads=1, max_side=64)
    img = _image(40, 72, 5)
    assert np.array_equal(a.stylize(img, 64), b.stylize(img, 64))
    c = anime.load_model(model_files["NCHW"], threads=1, max_side=64)
    assert c.stylize(img, 64).shape == (36, 64, 3)


def test_model_from_bytes(model_files: dict[str, Path]) -> None:
    m = anime.AnimeModel(model_files["NCHW"].read_bytes(), threads=1)
    assert m.stylize(_image(33, 47)).shape == (33, 47, 3)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_obtain_model_file_from_package(tmp_path: Path, model_files: dict[str, Path]) -> None:
    pkg = tmp_path / "pkg" / "animeganv2-dev"
    pkg.mkdir(parents=True)
    (pkg / "model.fp32.onnx").write_bytes(model_files["NCHW"].read_bytes())
    got = anime.obtain_model_file(
        "animeganv2-dev", sha256=_sha(model_files["NCHW"]), package_dir=tmp_path / "pkg"
    )
    assert got == pkg / "model.fp32.onnx"
    with pytest.raises(ValueError, match="SHA-256"):
        anime.obtain_model_file("animeganv2-dev", sha256="0" * 64, package_dir=tmp_path / "pkg")


def test_obtain_model_file_from_s3_once(tmp_path: Path, model_files: dict[str, Path]) -> None:
    calls: list[tuple[str, str]] = []
    data = model_files["NCHW"].read_bytes()

    def fake_download(bucket: str, key: str, dest: str) -> None:
        calls.append((bucket, key))
        Path(dest).write_bytes(data)

    sha = _sha(model_files["NCHW"])
    for _ in range(2):
        got = anime.obtain_model_file(
            "animeganv2-dev", sha256=sha, s3_uri="s3://models-bucket/v1", s3=fake_download, tmp_dir=tmp_path
        )
        assert got.read_bytes() == data
    assert calls == [("models-bucket", "v1/animeganv2-dev/model.fp32.onnx")]


def test_obtain_model_file_with_a_client_and_a_bad_hash(tmp_path: Path) -> None:
    class Client:
        def download_file(self, bucket: str, key: str, dest: str) -> None:
            Path(dest).write_bytes(b"not the model")

    with pytest.raises(ValueError, match="SHA-256"):
        anime.obtain_model_file("m", sha256="0" * 64, s3_uri="s3://b/p", s3=Client(), tmp_dir=tmp_path)
    assert not any(tmp_path.rglob("*.onnx")) and not any(tmp_path.rglob("*.part"))


def test_psnr() -> None:
    a = _image(8, 8)
    assert anime.psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert 60 < anime.psnr(a, b) < 80
