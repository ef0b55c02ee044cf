"""Download a published model (pooch, hash-checked), convert it and install it in the cache or S3.

pooch does the transfer: it streams into a temporary file beside the target, checks a pinned SHA-256,
deletes the file on a mismatch, and skips the download when the target already has the pinned hash. What
this module adds: https only (plain http to a loopback mirror), the manifest's ``sha256_prefix`` pins
(pooch checks full hashes only), trust on first use, errors as FetchError, and a rich progress bar that
speaks pooch's progress-bar protocol. An interrupted transfer is not resumed: run the fetch again.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from atelier.inference.models import ModelEntry, cache_dir, model_dir, sha256_file, write_info

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
USER_AGENT = "atelier-models/1"


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


class RichProgressBar:
    """pooch's progress-bar protocol (``total``, ``update``, ``reset``, ``close``) drawn with rich."""

    def __init__(self, description: str = "download", console: Any = None) -> None:
        from rich import progress as rp

        columns = (rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn(), rp.TimeRemainingColumn())
        self._progress = rp.Progress("{task.description}", *columns, console=console)
        self._task = self._progress.add_task(description, total=None)

    @property
    def total(self) -> float | None:
        return self._progress.tasks[0].total

    @total.setter
    def total(self, value: float | None) -> None:  # pooch sets it once the response's length is known
        self._progress.update(self._task, total=value or None)
        self._progress.start()

    def update(self, n: int) -> None:
        self._progress.update(self._task, advance=n)

    def reset(self) -> None:
        self._progress.reset(self._task)

    def close(self) -> None:
        self._progress.stop()


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: Any = None,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` to ``dest`` (kept if it already has the pinned ``sha256``); returns the SHA-256.

    ``progress`` is a pooch progress bar (e.g. :class:`RichProgressBar`). On a hash mismatch nothing is
    left at ``dest`` and HashMismatch is raised. Without a full pin the file is always downloaded afresh, so
    the hash returned is that of what ``url`` serves now.
    """
    import pooch
    import requests

    _check_url(url)
    dest = Path(dest)
    if sha256 is None:
        dest.unlink(missing_ok=True)
    pooch.get_logger().setLevel(logging.WARNING)  # its info lines name pooch's API; the CLI prints its own
    downloader = pooch.HTTPDownloader(
        progressbar=progress or False, timeout=timeout, headers={"User-Agent": USER_AGENT}
    )
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256.lower()}" if sha256 else None,
            fname=dest.name,
            path=dest.parent,
            downloader=downloader,
        )
    except ValueError as exc:
        if sha256 is None:
            raise
        raise HashMismatch(f"{url}: {exc}") from exc
    except requests.RequestException as exc:
        raise FetchError(f"{url}: download failed, nothing was kept ({exc})") from exc
    finally:
        if progress is not None:
            progress.close()
    digest = sha256_file(dest)
    try:
        check_pin(digest, sha256, sha256_prefix, url)
    except HashMismatch:
        dest.unlink()
        raise
    return digest


def check_pin(digest: str, sha256: str | None, sha256_prefix: str | None, source: str) -> None:
    """Raise HashMismatch unless ``digest`` is the pinned hash or starts with the pinned prefix."""
    expected = (sha256 or sha256_prefix or "").lower()
    if not digest.startswith(expected):
        raise HashMismatch(f"{source}: SHA-256 {digest} does not match the pinned {expected}")


def fetch(
    entry: ModelEntry,
    *,
    root: Path | None = None,
    trust_on_first_use: bool = False,
    url: str | None = None,
    progress: Any = None,
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
