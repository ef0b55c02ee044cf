"""fetch against a local HTTP server: a good file, a corrupt one, an interrupted and resumed transfer."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx
import pytest

from atelier.inference import models
from atelier.inference.anime import AnimeModel
from atelier_dev.models import animegan, convert
from atelier_dev.models.fetch import FetchError, HashMismatch, download, fetch


class _Server:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.cut_first_at: int | None = None  # close the first transfer after this many bytes
        self.range_headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.range_headers.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = server.payload[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}"
                    )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first_at is not None:
                    self.wfile.write(body[: server.cut_first_at])
                    server.cut_first_at = None
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.onnx"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return animegan.build(seed=4, layout="NHWC", size_multiple=32).SerializeToString()


@pytest.fixture()
def server(onnx_bytes: bytes) -> Iterator[_Server]:
    with _Server(onnx_bytes) as s:
        yield s


def _entry(url: str, sha: str | None) -> models.ModelEntry:
    base = models.get("animeganv2_shinkai")
    status = "pinned" if sha else "unpinned"
    return dataclasses.replace(base, source_url=url, sha256=sha, sha256_status=status)


def test_good_file_is_installed_and_runs(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    info = fetch(_entry(server.url, sha), root=tmp_path)
    assert info["source_sha256"] == sha and info["trained"] is True
    assert info["source_sha256_trusted_on_first_use"] is False
    path = models.installed_path("animeganv2_shinkai", "fp32", tmp_path)
    assert models.read_info("animeganv2_shinkai", tmp_path) == info
    model = AnimeModel(path, threads=1)
    assert model.layout == "NHWC"
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["trained"] == "true"


def test_corrupt_file_is_refused_and_nothing_installed(
    tmp_path: Path, server: _Server, onnx_bytes: bytes
) -> None:
    wrong = hashlib.sha256(onnx_bytes + b"x").hexdigest()
    with pytest.raises(HashMismatch):
        fetch(_entry(server.url, wrong), root=tmp_path)
    folder = models.model_dir("animeganv2_shinkai", tmp_path)
    assert not models.installed_path("animeganv2_shinkai", "fp32", tmp_path).exists()
    assert models.read_info("animeganv2_shinkai", tmp_path) is None
    assert not any(p.suffix in (".onnx", ".part") for p in folder.rglob("*"))


def test_unpinned_needs_trust_on_first_use(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    with pytest.raises(FetchError, match="trust-on-first-use"):
        fetch(_entry(server.url, None), root=tmp_path)
    assert server.range_headers == []  # refused before any download
    info = fetch(_entry(server.url, None), root=tmp_path, trust_on_first_use=True)
    assert info["source_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert info["source_sha256_trusted_on_first_use"] is True


def test_interrupted_transfer_resumes_with_range(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    server.cut_first_at = 100_000
    dest = tmp_path / "dl" / "model.onnx"
    with pytest.raises(FetchError, match="interrupted"):
        download(server.url, dest, sha256=sha)
    part = dest.with_name("model.onnx.part")
    assert part.stat().st_size == 100_000 and not dest.exists()
    assert download(server.url, dest, sha256=sha) == sha
    assert server.range_headers == [None, "bytes=100000-"]
    assert dest.read_bytes() == onnx_bytes and not part.exists()


def test_prefix_pin_is_checked(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    assert download(server.url, tmp_path / "a.onnx", sha256_prefix=sha[:8]) == sha
    with pytest.raises(HashMismatch):
        download(
            server.url, tmp_path / "b.onnx", sha256_prefix="00000000" if sha[:8] != "00000000" else "11111111"
        )


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="refusing"):
        download("http://example.com/model.onnx", tmp_path / "m.onnx")


def test_pytorch_checkpoint_is_fetched_and_converted(tmp_path: Path) -> None:
    pt = tmp_path / "face.pt"
    convert.write_state_dict(pt, animegan.seeded_weights(8))
    data = pt.read_bytes()
    with _Server(data) as srv:
        entry = dataclasses.replace(
            models.get("face_paint_512_v2"),
            source_url=srv.url.replace("model.onnx", "face.pt"),
            sha256=hashlib.sha256(data).hexdigest(),
            sha256_status="pinned",
        )
        info = fetch(entry, root=tmp_path / "cache")
    assert info["layout"] == "NCHW" and info["trained"] is True
    assert models.installed_path("face_paint_512_v2", "fp32", tmp_path / "cache").exists()
