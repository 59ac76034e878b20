"""The README and docs as a reader follows them: every relative link and image resolves,
every ``#anchor`` names a heading of its target, and the README stays a page that decides
and starts (short, in the order a new user needs)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md"),
                *(REPO / "web" / "docs").glob("*.md"), REPO / "example_workflows" / "input" / "README.md"])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
README_ORDER = ["Requirements", "Install", "Quick start", "Check the install", "What is proven",
                "Limitations", "Documentation"]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [m.group(1) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)]


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return LINK.findall(text)


def test_slug_of_known_headings():
    assert github_slug("Guidance memory: the estimate, the reservation and `keep_activations`") == \
        "guidance-memory-the-estimate-the-reservation-and-keep_activations"
    assert github_slug("Level 3: shapes v2, and whether a proxy can test guidance at all") == \
        "level-3-shapes-v2-and-whether-a-proxy-can-test-guidance-at-all"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not fetched here
            if not target.startswith(("https://", "mailto:")):
                broken.append(f"{target} (external links are https)")
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in {github_slug(h) for h in headings(dest)}:
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_readme_is_short_and_in_a_new_users_order():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "the README grew past 250 lines: move depth into docs/"
    sections = [h for h in headings(REPO / "README.md")]
    found = [next((i for i, h in enumerate(sections) if h.startswith(want)), None) for want in README_ORDER]
    assert None not in found, f"README sections missing: {[w for w, i in zip(README_ORDER, found) if i is None]}"
    assert found == sorted(found), f"README sections out of order: {sections}"


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = {(p.parent / t.partition("#")[0]).resolve() for p in PAGES for t in links(p)
              if not re.match(r"[a-z]+:", t) and t.partition("#")[0]}
    orphans = [p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked]
    assert not orphans, f"docs pages nobody links to: {orphans}"
