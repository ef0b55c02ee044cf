"""Download a published model (resumable, hash-checked), convert it and install it in the cache or S3."""

from __future__ import annotations

import hashlib
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from atelier.inference.models import ModelEntry, cache_dir, model_dir, sha256_file, write_info

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ProgressFactory = Callable[[int, int], Callable[[int], None]]


class FetchError(RuntimeError):
    """A download or install that was refused or failed; nothing was installed."""


class HashMismatch(FetchError):
    """The downloaded bytes do not have the pinned SHA-256."""


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS:
        return  # a local mirror or test server
    raise FetchError(f"refusing to download over {parsed.scheme or 'no scheme'}: {url}")


def rich_progress(total: int, start: int) -> Callable[[int], None]:
    """A rich progress bar (bytes, speed, time left); returns the advance callback."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    progress.start()
    task = progress.add_task("download", total=total or None, completed=start)

    def advance(n: int) -> None:
        if n < 0:
            progress.stop()
            return
        progress.update(task, advance=n)

    return advance


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: ProgressFactory | None = None,
    chunk: int = 1 << 16,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumed with an HTTP Range); returns the SHA-256.

    On a hash mismatch the partial file is deleted and HashMismatch is raised; ``dest`` is only created
    once the bytes are complete and match.
    """
    _check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "atelier-models/1"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the part file is already complete (or longer than the file)
            return _finish(part, dest, sha256, sha256_prefix)
        raise FetchError(f"{url}: HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise FetchError(f"{url}: {exc.reason}") from exc
    with response:
        status = getattr(response, "status", 200)
        if start and status != 206:  # the server ignored the Range: start again
            start = 0
        length = int(response.headers.get("Content-Length") or 0)
        total = start + length if length else 0
        advance = progress(total, start) if progress else None
        received = 0
        try:
            with open(part, "ab" if start else "wb") as f:
                while block := response.read(chunk):
                    f.write(block)
                    received += len(block)
                    if advance:
                        advance(len(block))
        except (OSError, urllib.error.URLError) as exc:
            raise FetchError(f"{url}: transfer interrupted after {start + received} bytes ({exc})") from exc
        finally:
            if advance:
                advance(-1)
    if length and received < length:
        raise FetchError(
            f"{url}: transfer interrupted after {start + received} of {total} bytes; run again to resume"
        )
    return _finish(part, dest, sha256, sha256_prefix)


def _finish(part: Path, dest: Path, sha256: str | None, sha256_prefix: str | None) -> str:
    digest = sha256_file(part)
    expected = sha256 or sha256_prefix
    if expected and not digest.startswith(expected.lower()):
        part.unlink(missing_ok=True)
        raise HashMismatch(
            f"SHA-256 {digest} does not match the pinned {expected}; the download was discarded"
        )
    part.replace(dest)
    return digest


def fetch(
    entry: ModelEntry,
    *,
    root: Path | None = None,
    trust_on_first_use: bool = False,
    url: str | None = None,
    progress: ProgressFactory | None = None,
    s3_uri: str | None = None,
    s3_client: Any = None,
) -> dict[str, Any]:
    """Download, check, convert and install one model; returns the info record written to the cache."""
    if entry.format == "dev":
        raise FetchError(f"{entry.name} is built locally: run `atelier models build-dev`")
    if not entry.pinned and not trust_on_first_use:
        raise FetchError(
            f"{entry.name}: no SHA-256 is pinned for {entry.source_url}; refusing to install it. "
            "Pass --trust-on-first-use to accept the file and record the hash it has."
        )
    root = root or cache_dir()
    folder = model_dir(entry.name, root)
    source = url or entry.source_url
    assert source is not None
    download_path = folder / "download" / entry.filename
    digest = download(
        source, download_path, sha256=entry.sha256, sha256_prefix=entry.sha256_prefix, progress=progress
    )
    from atelier_dev.models import convert as conv

    staging = folder / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        outputs = conv.convert(entry, download_path, staging)
        for path in outputs.values():
            conv.run_graph(path, entry.layout)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{entry.name}: the downloaded file could not be converted or run: {exc}") from exc
    installed: dict[str, str] = {}
    for precision, path in outputs.items():
        target = folder / path.name
        path.replace(target)
        installed[precision] = sha256_file(target)
    shutil.rmtree(staging, ignore_errors=True)
    info: dict[str, Any] = {
        "name": entry.name,
        "architecture": entry.architecture,
        "layout": entry.layout,
        "value_range": list(entry.value_range),
        "size_multiple": entry.size_multiple,
        "trained": entry.trained,
        "source_url": source,
        "source_sha256": digest,
        "source_sha256_trusted_on_first_use": not entry.pinned,
        "onnx_sha256": installed,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if s3_uri:
        info["s3"] = upload_to_s3(folder, s3_uri, installed, client=s3_client)
    write_info(entry.name, info, root)
    return info


def upload_to_s3(folder: Path, s3_uri: str, installed: dict[str, str], client: Any = None) -> list[str]:
    """Copy the installed ONNX files of ``folder`` under an s3://bucket/prefix; returns the object keys."""
    parsed = urlparse(s3_uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise FetchError(f"not an s3:// URI: {s3_uri}")
    if client is None:
        import boto3  # imported here so the core stays AWS-free at import

        client = boto3.client("s3")
    prefix = parsed.path.strip("/")
    keys = []
    for precision, digest in installed.items():
        name = f"model.{precision}.onnx"
        key = "/".join(p for p in (prefix, folder.name, name) if p)
        client.upload_file(str(folder / name), parsed.netloc, key, ExtraArgs={"Metadata": {"sha256": digest}})
        keys.append(key)
    return keys


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()
