"""The documentation: a short README that links to the docs/ pages, a mkdocs.yml whose nav lists every page, and a
strict mkdocs build (every internal link and anchor resolves)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

DOCS = REPO / "docs"
README_MAX_LINES = 300


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists (`- Title: page.md` or `- page.md`), read without a YAML parser."""
    lines = (REPO / "mkdocs.yml").read_text().splitlines()
    start = lines.index("nav:") + 1
    pages = []
    for line in lines[start:]:
        if line and not line.startswith((" ", "-")):
            break  # the next top-level key
        page = re.fullmatch(r"\s*-\s*(?:[^:]+:\s*)?(\S+\.md)\s*(?:#.*)?", line)
        if page:
            pages.append(page.group(1))
    return pages


def readme_links() -> list[str]:
    """The relative link targets of README.md (no URLs, no in-page anchors), without their #anchor."""
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail to a page under docs/"


def test_the_nav_lists_every_page_and_only_pages_that_exist() -> None:
    pages = nav_pages()
    assert pages and len(pages) == len(set(pages)), pages
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    unlisted = [p for p in on_disk if p not in pages]
    assert not unlisted, f"pages under docs/ missing from mkdocs.yml's nav: {unlisted}"


def test_every_relative_link_of_the_readme_points_at_a_file() -> None:
    links = readme_links()
    assert any(link.startswith("docs/") for link in links)
    broken = [link for link in links if not (REPO / link).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {link for link in readme_links() if link.startswith("docs/")}
    unlinked = [p for p in nav_pages() if f"docs/{p}" not in linked]
    assert not unlinked, f"README.md does not link these docs pages: {unlinked}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` fails on any warning: a link to a missing page or anchor, a page outside the nav."""
    pytest.importorskip("mkdocs")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").is_file()
