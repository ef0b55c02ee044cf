"""The model manifest: every entry complete, names unique, layouts, ranges and URLs valid."""

from __future__ import annotations

import json

import pytest

from atelier.inference import models
from atelier_dev.models import animegan


def _raw() -> list[dict]:
    return json.loads(models.MANIFEST_PATH.read_text())["models"]


def test_every_entry_has_every_field() -> None:
    for entry in _raw():
        missing = [k for k in models.REQUIRED_FIELDS if k not in entry]
        assert not missing, (entry["name"], missing)
        if entry["architecture"] == "edsr":
            assert all(k in entry for k in models.EDSR_FIELDS), entry["name"]


def test_names_unique_and_loadable() -> None:
    names = [e["name"] for e in _raw()]
    assert len(names) == len(set(names))
    assert [e.name for e in models.load_manifest()] == names


def test_layouts_ranges_and_urls() -> None:
    for e in models.load_manifest():
        assert e.layout in ("NCHW", "NHWC")
        assert e.value_range in ((-1.0, 1.0), (0.0, 255.0))
        assert e.size_multiple >= 1 and e.default_working_size % e.size_multiple == 0
        if e.format != "dev":
            assert e.source_url is not None and e.source_url.startswith("https://"), e.name
        if e.pinned:
            assert e.sha256 is not None and len(e.sha256) == 64
        else:
            assert e.sha256 is None


def test_required_models_present() -> None:
    names = set(models.names())
    assert {"face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika"} <= names
    assert {"animeganv2_hayao", "animeganv2_shinkai", "animeganv2_paprika"} <= names
    edsr = {f"edsr_baseline_x{s}" for s in (2, 3, 4)} | {f"edsr_x{s}" for s in (2, 3, 4)}
    assert edsr <= names
    for name in ("animeganv2_hayao", "animeganv2_shinkai", "animeganv2_paprika"):
        e = models.get(name)
        assert (e.layout, e.value_range, e.size_multiple) == ("NHWC", (-1.0, 1.0), 32)


def test_edsr_parameters_and_prefixes() -> None:
    for s in (2, 3, 4):
        base, full = models.get(f"edsr_baseline_x{s}"), models.get(f"edsr_x{s}")
        assert (base.param("scale"), base.param("n_resblocks"), base.param("n_feats")) == (s, 16, 64)
        assert (full.param("n_resblocks"), full.param("n_feats"), full.param("res_scale")) == (32, 256, 0.1)
        for e in (base, full):
            assert e.sha256_prefix is not None and e.source_url is not None
            assert e.source_url.endswith(f"-{e.sha256_prefix}.pt")
            assert e.sha256 is None or e.sha256.startswith(e.sha256_prefix)
            assert e.param("receptive_field") == 2 * e.param("n_resblocks") + 4
            assert "fp16" in e.precisions and e.device == "gpu"


def test_dev_models_are_marked_untrained() -> None:
    dev = [e for e in models.load_manifest() if e.format == "dev"]
    assert {e.layout for e in dev if e.architecture == "animeganv2"} == {"NCHW", "NHWC"}
    assert all(e.trained is False for e in dev)
    assert models.untrained_notice({"trained": False})
    assert models.untrained_notice({"trained": True}) == ""


def test_invalid_entry_rejected() -> None:
    good = dict(_raw()[0])
    for key, value in (("layout", "CHW"), ("value_range", [1, -1]), ("source_url", "http://x/y.pt")):
        bad = dict(good, **{key: value})
        with pytest.raises(ValueError):
            models.validate_entry(bad)
    with pytest.raises(ValueError):
        models.validate_entry({k: v for k, v in good.items() if k != "licence"})
    edsr = next(e for e in _raw() if e["name"] == "edsr_x2")
    with pytest.raises(ValueError, match="sha256_prefix"):
        models.validate_entry(dict(edsr, sha256="f" * 64, sha256_status="pinned"))


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="face_paint_512_v2"):
        models.get("no-such-model")


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(tmp_path))
    assert models.cache_dir() == tmp_path
    monkeypatch.delenv("ATELIER_MODEL_DIR")
    assert models.cache_dir().parts[-3:] == (".cache", "atelier", "models")


def test_generator_parameter_count() -> None:
    assert animegan.parameter_count() == 2_143_552
