"""The layout's rules (docs/architecture.md) as tests: small library modules and functions,
one registry helper behind every pluggable kind, and the layer contract's folders."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import tomllib

from aigcguard.registry import Registry, RegistryError
from tests.helpers import ROOT

LIBRARY = ("core", "watermark", "detectors", "provenance", "service", "cli")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 600, 80


def _library_files():
    for folder in LIBRARY:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_library_module_or_function_is_too_long():
    too_long = []
    for path in _library_files():
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "over the limits of docs/architecture.md:\n" + "\n".join(too_long)


def test_every_code_folder_installs_under_aigcguard_and_tests_do_not():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setup = config["tool"]["setuptools"]
    assert all(p == "aigcguard" or p.startswith("aigcguard.") for p in setup["packages"])
    folders = {v.split("/")[0] for v in setup["package-dir"].values()}
    assert set(LIBRARY) <= folders and "tests" not in folders
    # every package folder of the repository is listed, so a wheel holds all of the code
    listed = set(setup["packages"])
    for pkg, folder in setup["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((pkg, *rel)) in listed, f"{init.parent} is not in pyproject packages"


def test_the_layer_contract_names_every_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    assert layers[0] == "aigcguard.cli" and layers[1] == "aigcguard.service"
    assert set(layers[2].replace(" ", "").split("|")) == {
        "aigcguard.watermark",
        "aigcguard.detectors",
        "aigcguard.provenance",
    }
    foundation = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    modules = {p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    assert {m.removeprefix("aigcguard.") for m in foundation} == modules


def test_registry_helper():
    reg: Registry = Registry("toy")

    @reg.register("Alpha", about="first")
    def alpha(x=1):
        return ("alpha", x)

    assert reg.is_registered("alpha") and "ALPHA" in reg and reg.list() == ["alpha"]
    reg.add("aardvark", alpha)
    assert reg.list() == ["aardvark", "alpha"] and reg.list(ordered=True) == ["alpha", "aardvark"]
    assert reg.list("aa*") == ["aardvark"]
    reg.remove("aardvark")
    assert reg.create("alpha", x=2) == ("alpha", 2) and reg.meta("alpha") == {"about": "first"}
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("alpha", alpha)
    with pytest.raises(RegistryError, match=r"unknown toy 'beta'; available: alpha"):
        reg.create("beta")
    reg.remove("alpha")
    assert not reg.is_registered("alpha") and len(reg) == 0


def test_registry_loads_its_builtins_on_first_read(tmp_path, monkeypatch):
    """A registry names the module that registers its built-ins and imports it the first time
    it is read (so exposing the registry imports nothing heavy); a failing import is an
    error on every read, never an empty list."""
    reg: Registry = Registry("toy", builtins="toy_builtins")
    monkeypatch.setattr(sys.modules[__name__], "TOY_REGISTRY", reg, raising=False)
    (tmp_path / "toy_builtins.py").write_text(
        f"import {__name__} as t\nt.TOY_REGISTRY.add('beta', lambda: 'b')\n"
        "assert t.TOY_REGISTRY.list() == ['beta']  # read while loading: no recursion\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_builtins" not in sys.modules
    assert reg.list() == ["beta"] and "toy_builtins" in sys.modules
    assert reg.create("beta") == "b" and len(reg) == 1
    broken: Registry = Registry("toy", builtins="no_such_module_anywhere")
    for _ in range(2):
        with pytest.raises(ModuleNotFoundError):
            broken.list()


def test_watermark_package_names_load_lazily():
    """Naming the watermark defaults imports no torch; the methods register on first read."""
    probe = (
        "import sys\n"
        "from aigcguard.watermark import DEFAULT_KEY, DEFAULT_METHOD\n"
        "from aigcguard.cli.common import method_option\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from aigcguard.watermark import list_methods\n"
        "assert DEFAULT_METHOD in list_methods() and 'dwtdct' in list_methods()\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
