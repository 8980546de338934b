"""The repository documents itself: `docs/` holds the reference, and nothing cites a document the
repository does not contain (the product contract's section numbers)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Built from pieces so this file does not match itself; `\u00a7` is how JSON escapes the sign.
FOREIGN_CITE = re.compile("SPEC" + r"\s*(?:\u00a7|\\u00a7)")
SKIP_DIRS = {
    ".git", ".venv", ".ci-venv", "build", "dist", "__pycache__", ".mypy_cache", "node_modules",
}  # fmt: skip
DOCS = ["configuration", "request-path", "admin-api", "errors", "security", "operations"]
TEXT_SUFFIXES = {".py", ".md", ".json", ".yaml", ".yml"}
DOC_REF = re.compile(r"docs/([a-z-]+\.md)")


def repository_files() -> list[Path]:
    """The repository's own files: not git's, not caches, not a virtualenv (any folder holding a
    `pyvenv.cfg`, whatever its name: `.ci/run` makes two) nor installed npm packages."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIP_DIRS
            and not d.endswith((".egg-info", "_cache"))
            and not d.startswith(".hypothesis")
            and not (Path(folder) / d / "pyvenv.cfg").exists()
        ]
        files.extend(Path(folder) / name for name in names)
    return files


def test_no_file_cites_the_contract_by_section() -> None:
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FOREIGN_CITE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


def test_the_reference_documents_exist_and_are_linked_from_the_index() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    for name in DOCS:
        assert (ROOT / "docs" / f"{name}.md").stat().st_size > 1000
        assert f"({name}.md)" in index


def test_every_docs_reference_in_code_and_docs_names_an_existing_file() -> None:
    cited = set()
    for path in repository_files():
        if path.suffix not in TEXT_SUFFIXES and path.name != "Dockerfile":
            continue
        cited.update(DOC_REF.findall(path.read_text(encoding="utf-8")))
    assert "errors.md" in cited  # the code does cite the docs
    missing = sorted(name for name in cited if not (ROOT / "docs" / name).is_file())
    assert missing == []


def test_relative_links_between_the_docs_resolve() -> None:
    link = re.compile(r"\]\(([a-z-]+\.md)(?:#[a-z0-9-]+)?\)")
    for doc in (ROOT / "docs").glob("*.md"):
        for target in link.findall(doc.read_text()):
            assert (ROOT / "docs" / target).is_file(), f"{doc.name} links to {target}"


# A file of the repository named in a comment, a docstring or a document: a path under one of
# the top-level folders, with its suffix (a `*` stands for any part of a name).
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:proxy|tests|bench|docs|examples|\.ci)/[\w./*-]*\.(?:py|md|ya?ml|json|toml))\b"
)
# `docs/<name>.md#<anchor>`, or `<name>.md#<anchor>` between the documents.
DOC_ANCHOR = re.compile(r"(?:docs/)?\b([a-z-]+\.md)#([\w-]+)")


def naming_files() -> list[Path]:
    """What is read for names of files and sections: the code, the bench, the tests, the docs and
    the README. CHANGELOG.md is history, and may name what has gone since."""
    return [
        path
        for path in repository_files()
        if path.suffix in {".py", ".md"}
        and path.name != "CHANGELOG.md"
        and path.relative_to(ROOT).parts[0] in {"proxy", "tests", "bench", "docs", "README.md"}
    ]


def test_every_repository_file_named_in_code_and_docs_exists() -> None:
    """A file moved or renamed takes its mentions along: `proxy/dataplane/sync.py` in a comment,
    `tests/dataplane/test_forward_*.py` in a document each name something that is there."""
    missing = []
    for path in naming_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for named in REPO_PATH.findall(line):
                if not (any(ROOT.glob(named)) if "*" in named else (ROOT / named).exists()):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {named}")
    assert missing == []


def heading_anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's) gives a heading: lower case, punctuation
    dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_section_anchor_named_in_code_and_docs_exists() -> None:
    """`docs/operations.md#metrics` names a heading of that document."""
    anchors = {
        doc.name: {
            heading_anchor(line.lstrip("#"))
            for line in doc.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")
        }
        for doc in (ROOT / "docs").glob("*.md")
    }
    missing = []
    for path in naming_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for doc, anchor in DOC_ANCHOR.findall(line):
                if doc in anchors and anchor not in anchors[doc]:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {doc}#{anchor}")
    assert missing == []
