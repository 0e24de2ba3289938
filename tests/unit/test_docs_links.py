"""The documentation's relative links resolve: every `[x](path)` and `[x](path#anchor)` in README.md and docs/*.md
names a file that exists, and every anchor a heading of that file (GitHub's slugs). Links to other sites are not
followed; links inside code (fenced blocks, inline spans) are not links."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target), an optional title after the target; the text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
EXTERNAL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # https:, http:, mailto:
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")  # GitHub's line anchors into a source file


def prose(text: str, inline_code: bool = False) -> str:
    """`text` with fenced code blocks blanked out, and inline code spans unless `inline_code` (same length: line
    numbers and offsets still hold)."""
    out, fence = [], None
    for line in text.split("\n"):
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            out.append("")
        elif opened:
            fence = opened.group(1)
            out.append("")
        else:
            out.append(line if inline_code else INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, all but letters, digits, `_`, `-` and spaces
    dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown document; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(text, inline_code=True).split("\n"):  # a heading's code is part of its anchor
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline and reference-style link outside code."""
    plain = prose(text)
    for pattern in (LINK, REFERENCE):
        for match in pattern.finditer(plain):
            yield plain.count("\n", 0, match.start(1)) + 1, match.group(1)


def broken_links(source: Path, text: str | None = None) -> list[str]:
    """What is wrong with the relative links of `source` (its `text`, when given, as if it were there)."""
    text = source.read_text(encoding="utf-8") if text is None else text
    name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    problems = []
    for line, target in links(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        where = f"{name}:{line}: ({target})"
        if not path:
            dest, dest_text = source, text
        else:
            dest = ROOT / path.lstrip("/") if path.startswith("/") else (source.parent / path).resolve()
            if not dest.exists():
                problems.append(f"{where}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
                continue
            dest_text = None
        if not anchor:
            continue
        if dest.suffix.lower() != ".md":
            if not (dest.is_file() and LINE_ANCHOR.match(anchor)):
                problems.append(f"{where}: #{anchor} is not a line anchor, and {dest.name} is not markdown")
            continue
        if dest_text is None:
            dest_text = dest.read_text(encoding="utf-8")
        if anchor not in anchors(dest_text):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {dest.name}")
    return problems


def test_every_relative_link_in_the_readme_and_docs_resolves():
    assert ROOT / "README.md" in DOCUMENTS and len(DOCUMENTS) > 1, DOCUMENTS
    relative = [t for doc in DOCUMENTS for _, t in links(doc.read_text(encoding="utf-8")) if not EXTERNAL.match(t)]
    assert len(relative) >= 10, f"the docs link to each other; found only {relative}"  # the parser finds links
    problems = [p for doc in DOCUMENTS for p in broken_links(doc)]
    assert problems == [], "\n".join(problems)


def test_a_planted_broken_link_is_reported():
    planted = ROOT / "docs" / "planted.md"
    text = "\n".join([
        "# A heading",
        "Fine: [commands](../README.md#the-commands), [the file](operations.md), [here](#a-heading),",
        "[a folder](../tools/emulator/), [a source line](../Makefile#L1), [elsewhere](https://example.com/x#y),",
        "[a repeated heading](#a-heading-1), ![an image link](operations.md).",
        "Broken: [gone](no-such-file.md), [no anchor](operations.md#no-such-heading), [self](#nowhere),",
        "[split",
        "text](../README.md#not-there) and [ref]: missing-reference.md",
        "",
        "[ref]: ../no/such/reference.md",
        "Not links: `[in code](ignored.md)`",
        "```markdown",
        "[in a fence](ignored-too.md)",
        "```",
        "## A heading",
    ])
    problems = broken_links(planted, text)
    assert len(problems) == 5, "\n".join(problems)
    for expected in ("no file docs/no-such-file.md", "#no-such-heading in operations.md", "#nowhere in planted.md",
                     "#not-there in README.md", "no file no/such/reference.md"):
        assert any(expected in p for p in problems), (expected, problems)
    assert any(p.startswith("docs/planted.md:7: ") for p in problems), problems  # the line the target is on
    assert not any("ignored" in p for p in problems), problems


def test_anchors_are_githubs_slugs():
    assert slug("The emulator (`tools/emulator/`)") == "the-emulator-toolsemulator"
    assert slug("Identity mode (`make run RUN_ARGS=--identity`)") == "identity-mode-make-run-run_args--identity"
    assert slug("The ledger's keys") == "the-ledgers-keys"
    assert slug("CI/CD (`.github/workflows/ci.yml`)") == "cicd-githubworkflowsciyml"
    assert slug("See [the API](operations.md)") == "see-the-api"
    assert anchors("# Setup\n## Setup\n```\n# not a heading\n```\n### Setup #\n") == {"setup", "setup-1", "setup-2"}
    assert anchors("## Run it (`make run`)\n") == {"run-it-make-run"}
