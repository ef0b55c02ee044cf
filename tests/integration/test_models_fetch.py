"""fetch against a local HTTP server: good, corrupt and interrupted downloads, the cache, progress."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx
import pytest
from rich.console import Console

from atelier.inference import models
from atelier.inference.anime import AnimeModel
from atelier_dev.models import animegan, convert
from atelier_dev.models.fetch import FetchError, HashMismatch, RichProgressBar, download, fetch


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
                if self.path.endswith("/missing.onnx"):
                    self.send_error(404)
                    return
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


def test_interrupted_transfer_keeps_nothing_and_a_rerun_completes(
    tmp_path: Path, server: _Server, onnx_bytes: bytes
) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    server.cut_first_at = 100_000
    dest = tmp_path / "dl" / "model.onnx"
    with pytest.raises(FetchError, match="download failed"):
        download(server.url, dest, sha256=sha)
    assert list(dest.parent.iterdir()) == []  # no partial file, no temporary file
    assert download(server.url, dest, sha256=sha) == sha
    assert server.range_headers == [None, None]
    assert dest.read_bytes() == onnx_bytes and list(dest.parent.iterdir()) == [dest]


def test_a_file_with_the_pinned_hash_is_not_downloaded_again(
    tmp_path: Path, server: _Server, onnx_bytes: bytes
) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    dest = tmp_path / "model.onnx"
    assert download(server.url, dest, sha256=sha) == sha
    assert download(server.url, dest, sha256=sha) == sha
    assert len(server.range_headers) == 1
    dest.write_bytes(b"changed on disk")
    assert download(server.url, dest, sha256=sha) == sha  # a stale copy is replaced
    assert len(server.range_headers) == 2 and dest.read_bytes() == onnx_bytes


def test_prefix_pin_is_checked(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    assert download(server.url, tmp_path / "a.onnx", sha256_prefix=sha[:8]) == sha
    wrong = "00000000" if sha[:8] != "00000000" else "11111111"
    with pytest.raises(HashMismatch, match=f"does not match the pinned {wrong}"):
        download(server.url, tmp_path / "b.onnx", sha256_prefix=wrong)
    assert not (tmp_path / "b.onnx").exists()


def test_full_pin_mismatch_names_both_hashes(tmp_path: Path, server: _Server, onnx_bytes: bytes) -> None:
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(HashMismatch) as caught:
        download(server.url, tmp_path / "m.onnx", sha256=wrong)
    assert wrong in str(caught.value) and sha in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_a_fetch_error(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(FetchError, match="404"):
        download(server.url.replace("model.onnx", "missing.onnx"), tmp_path / "m.onnx")


def test_progress_bar_gets_the_length_and_is_closed(
    tmp_path: Path, server: _Server, onnx_bytes: bytes
) -> None:
    class Bar:
        total: float | None = None
        done = 0
        closed = 0

        def update(self, n: int) -> None:
            self.done += n

        def reset(self) -> None:
            self.done = 0

        def close(self) -> None:
            self.closed += 1

    bar = Bar()
    download(server.url, tmp_path / "m.onnx", progress=bar)
    assert bar.total == len(onnx_bytes) and bar.done == len(onnx_bytes) and bar.closed >= 1
    rich_bar = RichProgressBar(console=Console(file=io.StringIO(), force_terminal=False))
    download(server.url, tmp_path / "r.onnx", progress=rich_bar)
    assert rich_bar.total == len(onnx_bytes)


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
