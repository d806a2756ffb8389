"""What a base install (``pip install medcam-dicom``, no extras) gives a user, and how fast the command line
answers. The demo run in ``.ci/run`` proves the quick start on a real base install; these tests catch a
runtime import that only an extra (or nothing) brings, also in code paths the demo does not take."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import medcam_dicom

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medcam_dicom"
HEAVY_MODULES = ("torch", "monai", "numpy", "pydicom", "highdicom", "pynetdicom", "scipy", "SimpleITK", "matplotlib",
                 "huey", "rich")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0]).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Distributions that installing ``requirements`` brings, walked through the installed metadata."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        if ";" in requirement and "extra ==" in requirement.split(";", 1)[1]:
            continue
        name = _name(requirement)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(metadata.requires(name) or [])
        except metadata.PackageNotFoundError:
            pass
    return seen


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside a ``try`` whose handlers catch ImportError."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
        if not any(name in text for text in caught for name in ("ImportError", "ModuleNotFoundError")):
            continue
        for statement in node.body:
            lines |= {n.lineno for n in ast.walk(statement) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def _third_party_imports() -> list[tuple[str, str, bool]]:
    """(top-level module, where, guarded by ``except ImportError``) for every import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("medcam_dicom", "__future__"):
                    continue
                found.append((top, f"{path.relative_to(ROOT)}:{node.lineno}", node.lineno in guarded))
    return found


def test_every_runtime_import_comes_with_a_base_install_or_is_optional_with_a_named_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _closure(project["dependencies"])
    extras = {name: _closure(requirements) - base for name, requirements in project["optional-dependencies"].items()}
    providers = metadata.packages_distributions()
    problems = []
    for module, where, guarded in _third_party_imports():
        distributions = {_name(d) for d in providers.get(module, [])}
        if distributions & base:
            continue
        if not distributions:
            problems.append(f"{module} ({where}) is not installed at all: declare it in pyproject.toml")
        elif not guarded:
            problems.append(f"{module} ({where}) comes from {sorted(distributions)}, which no runtime dependency "
                            "brings: declare it, or import it under `except ImportError` naming the extra")
        elif not any(distributions & brought for brought in extras.values()):
            problems.append(f"{module} ({where}) is optional but no extra of pyproject.toml brings it")
    assert not problems, "\n".join(problems)


def test_the_dependency_check_sees_the_benchmark_cross_check_as_optional():
    """The check above is not vacuous: it finds the optional quantus import and knows it is guarded."""
    imports = {(module, guarded) for module, _, guarded in _third_party_imports()}
    assert ("quantus", True) in imports and ("torch", False) in imports


def test_help_and_version_answer_without_loading_torch_or_dicom_libraries():
    script = (
        "import sys\n"
        "from medcam_dicom.cli import main\n"
        "for argv in (['--version'], ['--help'], ['explain', '--help'], ['benchmark', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, argv\n"
        f"print('LOADED', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert f"medcam-dicom {medcam_dicom.__version__}" in run.stdout
    assert "--datasets" in run.stdout and "--methods" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "LOADED []"


def test_the_public_api_is_imported_on_first_use():
    run = subprocess.run([sys.executable, "-c", "import sys, medcam_dicom; assert 'torch' not in sys.modules; "
                          "from medcam_dicom import MedCAM, MedCAMConfig; print(MedCAM.__module__, "
                          "'torch' in sys.modules)"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["medcam_dicom.explain.medcam", "True"]
