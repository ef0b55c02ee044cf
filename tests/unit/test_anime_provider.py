"""The anime provider's choice: CPU flags, ``auto`` and the refusals, with the zip package's ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from atelier.config import ConfigError
from atelier.entrypoints.lambda_anime import anime_handler
from atelier.inference import anime


def _cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    cores = [f"processor\t: {n}\nflags\t\t: fpu sse2 avx2 {flags}\n" for n in range(2)]
    path.write_text("\n".join(cores))
    return str(path)


def test_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert anime.cpu_has_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert anime.cpu_has_bf16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not anime.cpu_has_bf16(_cpuinfo(tmp_path, "avx512f avx512_vnni"))
    assert not anime.cpu_has_bf16(str(tmp_path / "missing"))


def test_auto_takes_openvino_only_with_the_provider_and_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "OpenVINOExecutionProvider" not in ort.get_available_providers()  # the zip package's ONNX Runtime
    assert anime.resolve_provider("auto") == "cpu"
    with_ov = ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: with_ov)
    monkeypatch.setattr(anime, "cpu_has_bf16", lambda: True)
    assert anime.resolve_provider("auto") == "openvino-bf16"
    monkeypatch.setattr(anime, "cpu_has_bf16", lambda: False)
    assert anime.resolve_provider("auto") == "cpu"
    assert anime.resolve_provider("openvino-bf16") == "openvino-bf16"  # asked for: bf16 or OpenVINO's fp32


def test_openvino_without_its_runtime_or_an_unknown_path_is_refused() -> None:
    with pytest.raises(RuntimeError, match="onnxruntime-openvino"):
        anime.resolve_provider("openvino-bf16")
    with pytest.raises(ValueError, match="unknown anime provider 'gpu'"):
        anime.resolve_provider("gpu")
    with pytest.raises(ConfigError, match="ATELIER_ANIME_PROVIDER='tpu'"):
        anime_handler(env={"ATELIER_ANIME_PROVIDER": "tpu"})
