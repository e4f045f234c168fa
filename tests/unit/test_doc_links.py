"""The README stays a newcomer's page and every doc link lands (issue 27).

README.md is under 250 lines; the reference lives in docs/*.md. Every relative link and image in
README.md and docs/*.md points to a file or directory that exists, and a `#fragment` to a heading
of the page it names (GitHub's anchors: lower case, punctuation but `-` and `_` dropped, spaces
to `-`, a repeated heading gets `-1`, `-2`, ...). Links inside code blocks are not links.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The page without its fenced code blocks (and without inline code spans)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchor(title: str) -> str:
    """GitHub's anchor for a heading."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading: its text
    title = title.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = anchor(match["title"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(page: Path) -> list[str]:
    targets = [m["target"] for m in LINK.finditer(prose(page.read_text(encoding="utf-8")))]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # not https:, mailto:, ...


def test_anchor_follows_github():
    assert anchor("The time split: train on the past, evaluate on the future") == (
        "the-time-split-train-on-the-past-evaluate-on-the-future"
    )
    assert anchor("`phased-cpt merge`: the adapter merged") == "phased-cpt-merge-the-adapter-merged"
    assert anchor("HumanEval pass@1 (`evaluation.humaneval`)") == "humaneval-pass1-evaluationhumaneval"


def test_the_link_check_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\nSee [a](a.md#x), ![img](i.png) and `[no](code.md)`.\n```\n[no](block.md)\n```\n")
    assert relative_links(page) == ["a.md#x", "i.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_lands(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_is_a_newcomers_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250, "README.md: the reference goes to docs/*.md"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md links no docs page for: {unlinked}"


def test_the_readme_names_the_test_command_ci_runs():
    """.ci/run runs the README's test command."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.MULTILINE)
    assert re.search(r"^make test\b", "\n".join(m.group(0) for m in FENCE.finditer(readme)), re.MULTILINE)
