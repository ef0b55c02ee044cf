"""The import rules of ARCHITECTURE.md, read from the source: who imports what, who reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.imports import top_level_modules_loaded_by

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "layers" / "core" / "python"
TOOLS = ROOT / "tools"


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(base: Path, package: str) -> dict[str, ast.Module]:
    return {
        _module_name(path, base): ast.parse(path.read_text(), str(path))
        for path in sorted((base / package).rglob("*.py"))
    }


def _imports(tree: ast.Module) -> set[str]:
    """Every module an import statement names, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


SHIPPED_MODULES = _modules(SHIPPED, "atelier")
TOOL_MODULES = _modules(TOOLS, "atelier_dev")


def test_the_layout_is_what_the_architecture_page_describes() -> None:
    roles = {name.split(".")[1] for name in SHIPPED_MODULES if name.count(".") >= 1}
    assert {"domain", "imaging", "inference", "adapters", "entrypoints", "config", "ports"} <= roles
    assert len(SHIPPED_MODULES) > 30 and len(TOOL_MODULES) > 10


@pytest.mark.parametrize("module", sorted(SHIPPED_MODULES))
def test_shipped_code_never_imports_the_development_tools(module: str) -> None:
    assert not [name for name in _imports(SHIPPED_MODULES[module]) if _under(name, "atelier_dev")]


@pytest.mark.parametrize("module", sorted(SHIPPED_MODULES))
def test_adapters_are_imported_only_by_entry_points(module: str) -> None:
    if _under(module, "atelier.entrypoints") or _under(module, "atelier.adapters"):
        return
    assert not [name for name in _imports(SHIPPED_MODULES[module]) if _under(name, "atelier.adapters")]


@pytest.mark.parametrize("module", sorted(m for m in SHIPPED_MODULES if _under(m, "atelier.domain")))
def test_the_domain_reaches_no_adapter_entry_point_or_sdk(module: str) -> None:
    banned = ("atelier.adapters", "atelier.entrypoints", "boto3", "botocore", "aws_lambda_powertools", "cv2")
    imports = _imports(SHIPPED_MODULES[module])
    assert not [name for name in imports if any(_under(name, b) for b in banned)]


def _reads_environment(tree: ast.Module) -> list[int]:
    """Lines that read os.environ or call os.getenv (setting an item, as atelier/__init__ does, is not)."""
    lines = []
    stores = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
    }
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
        ):
            continue
        if node.attr == "getenv" or (node.attr == "environ" and id(node) not in stores):
            lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize("module", sorted(m for m in SHIPPED_MODULES if m != "atelier.config"))
def test_config_is_the_only_reader_of_the_environment(module: str) -> None:
    assert _reads_environment(SHIPPED_MODULES[module]) == [], f"{module} reads the environment"


def test_the_rule_on_the_environment_can_fail() -> None:
    assert _reads_environment(ast.parse("import os\nx = os.environ.get('A')\ny = os.getenv('B')")) == [2, 3]
    assert _reads_environment(ast.parse("import os\nos.environ['A'] = '1'")) == []


def test_the_core_imports_no_aws_sdk_at_import_time() -> None:
    """Importing every shipped module but the adapters and entry points loads neither boto3 nor botocore."""
    core = sorted(
        m for m in SHIPPED_MODULES if not (_under(m, "atelier.adapters") or _under(m, "atelier.entrypoints"))
    )
    assert top_level_modules_loaded_by(core) & {"boto3", "botocore"} == set()
    assert len(core) > 20
