"""The package map (docs/architecture.md) holds: every module lives in the subpackage it belongs to, imports
point one way (base ← core ← applications ← cli), and the native key layout is assembled in one function."""

from __future__ import annotations

import ast
from pathlib import Path

import satclip

ROOT = Path(satclip.__file__).parent

#: the layers of docs/architecture.md, lowest first; a unit may import only from its own layer or below
LAYERS = {
    "base": {"digests", "errors", "interrupts", "machine", "optional", "paths", "registry", "safe_output", "terminal",
             "__init__"},
    "core": {"encoding", "networks", "image", "models", "io", "pretrained", "data"},
    "applications": {"train", "eval", "embed", "retrieval"},
    "public API": {"api"},
    "workflows": {"recipes"},
    "cli": {"cli", "__main__"},
}
RANK = {unit: rank for rank, units in enumerate(LAYERS.values()) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_import_by_name(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return name == "import_module" and str(node.args[0].value).split(".")[0] == "satclip"


def _imports(path: Path) -> list[tuple[str, int]]:
    """The satclip modules ``path`` imports (module level or inside functions), with line numbers."""
    relative = path.relative_to(ROOT.parent).with_suffix("")
    module = ".".join(relative.parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            elif node.module and node.module.split(".")[0] == "satclip":
                targets = [node.module]
            else:
                continue
            found += [(target, node.lineno) for target in targets]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "satclip"]
        elif _is_import_by_name(node):  # importlib.import_module("satclip.x"): an import all the same
            found.append((node.args[0].value, node.lineno))
    return found


def test_every_top_level_unit_has_a_layer():
    units = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert units <= set(RANK), f"top-level modules or packages outside the package map: {sorted(units - set(RANK))}"
    loose = {p.stem for p in ROOT.glob("*.py")} - LAYERS["base"] - LAYERS["public API"] - {"__main__"}
    assert not loose, f"top-level modules that belong in a subpackage: {sorted(loose)}"


def test_imports_point_one_way():
    back_arrows = []
    for path in ROOT.rglob("*.py"):
        source = _unit(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        for target, line in _imports(path):
            unit = _unit(target)
            if unit == "__version__":  # `from .. import __version__`: the package's version string
                continue
            if unit != source and RANK[unit] > RANK[source]:
                back_arrows.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target}")
    assert not back_arrows, "imports against the layers:\n" + "\n".join(back_arrows)


def test_the_import_scan_sees_every_kind_of_import():
    """The scan above finds relative imports at any depth and imports by name (so it can fail)."""
    targets = {target for target, _ in _imports(ROOT / "models" / "clip.py")}
    assert "satclip.models.location_encoder" in targets and "satclip.image" in targets
    by_name = ast.parse("import importlib\nimportlib.import_module('satclip.retrieval.encoder')")
    assert [_is_import_by_name(node) for node in ast.walk(by_name)].count(True) == 1


def test_native_key_layout_is_assembled_in_one_function():
    """The ``location.*`` and ``visual.*`` key prefixes of a native state dict are spelled only in ``io/parts.py``
    (``pack`` assembles the layout, ``unpack`` takes it apart); everything else goes through them."""
    writers = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr | ast.Constant):
                text = node.value if isinstance(node, ast.Constant) else "".join(
                    v.value for v in node.values if isinstance(v, ast.Constant)
                )
                if isinstance(text, str) and text in ("location.", "visual."):
                    writers.append(f"{path.relative_to(ROOT)}:{node.lineno} {text!r}")
    assert writers and all(w.startswith("io/parts.py") for w in writers), writers
