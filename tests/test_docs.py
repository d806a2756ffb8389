"""The front door: the README stays short, names the two quick-start commands CI runs, and every relative link
in the README and docs/ leads to a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def headings(path: Path) -> set[str]:
    """GitHub's anchors of the Markdown headings of ``path``."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_the_readme_is_a_front_door_under_10_kb():
    assert len((ROOT / "README.md").read_bytes()) < 10_000


def test_ci_runs_the_two_quick_start_commands_of_the_readme():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick_start.splitlines() if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(f"\n{command}\n" in ci for command in commands)
    assert ci.index("bash scripts/demo.sh") < ci.index("bash scripts/test.sh")  # the demo on a base install


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_files_and_headings_that_exist(document):
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and anchor not in headings(target):
            broken.append(f"{link}: no such heading")
    assert not broken, f"{document.name}: " + "; ".join(broken)
