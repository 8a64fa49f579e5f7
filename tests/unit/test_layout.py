"""The house: imports flow one way, no private name crosses a file, the command line loads its groups plainly.

Read from the source with ``ast`` (nothing is imported), so a new module that
breaks a rule fails here with the file, the line and the import.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "activeft_label")

#: Layer of each part of the package: a module may import only parts of a lower layer, or its own part.
LAYERS = {
    "errors": 0, "version": 0,
    "budget": 1, "devices": 1,
    "selection": 2, "embeddings": 2,
    "files": 3,
    "evaluation": 4,
    "connectors.fiftyone": 5, "connectors.labelstudio": 5,
    "sync": 6,
    "app": 7, "cli": 7, "backend": 7,
}
#: The package's face, the deprecated re-export, and the connectors' shared folder: they may name any part.
FACES = {"activeft_label", "activeft_label.pool", "activeft_label.connectors"}
MAX_TOP_LEVEL_MODULES = 6


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                yield ".".join(parts), path


def _part(module):
    """The part of ``activeft_label.x.y...`` that LAYERS names (None for the package itself)."""
    inner = module.split(".")[1:]
    for size in (2, 1):
        key = ".".join(inner[:size])
        if len(inner) >= size and key in LAYERS:
            return key
    return None


def _imports(module, path):
    """(line, imported module, names) of every import of the package's own modules in ``path``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "activeft_label":
                names = [alias.name for alias in node.names]
                yield node.lineno, target, names
                for name in names:  # `from . import sync` imports a module
                    yield node.lineno, f"{target}.{name}", []
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "activeft_label":
                    yield node.lineno, alias.name, []


def _is_module(name):
    relative = os.path.join(ROOT, *name.split("."))
    return os.path.isdir(relative) or os.path.isfile(relative + ".py")


MODULES = sorted(_modules())


def test_the_package_has_the_layers_it_describes():
    for module, _ in MODULES:
        assert module in FACES or _part(module) is not None, f"{module} belongs to no layer of LAYERS"


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_down_the_layers(module, path):
    if module in FACES:
        return
    own = _part(module)
    for line, target, _ in _imports(module, path):
        if not _is_module(target):
            continue
        other = _part(target)
        if other is None or other == own:
            continue
        assert LAYERS[other] < LAYERS[own], (f"{os.path.relpath(path, ROOT)}:{line} imports {target} ({other}, layer "
                                             f"{LAYERS[other]}) from layer {LAYERS[own]} ({own})")


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_private_name_or_module_crosses_a_file(module, path):
    for line, target, names in _imports(module, path):
        private = [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
        assert not private, f"{os.path.relpath(path, ROOT)}:{line} imports {private} from {target}"
        if _is_module(target) and _part(target) != _part(module):
            hidden = [p for p in target.split(".")[1:] if p.startswith("_")]
            assert not hidden, f"{os.path.relpath(path, ROOT)}:{line} imports the private module {target}"


def test_the_command_line_adds_its_groups_with_plain_imports():
    for folder, _, files in os.walk(os.path.join(PACKAGE, "cli")):
        for name in files:
            if name.endswith(".py"):
                source = open(os.path.join(folder, name), encoding="utf-8").read()
                assert "import_module" not in source and "__import__" not in source, name


def test_at_most_six_modules_sit_in_the_package_itself():
    top = sorted(name for name in os.listdir(PACKAGE) if name.endswith(".py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
