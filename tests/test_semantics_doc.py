"""docs/semantics.md is the contract behind every rule ID (CE-6, BN-2, ...) that the code and
the tests cite. These checks keep the two in step: a cited ID must be defined there, defined
once, with an anchor of its own, and every definition must name test functions that exist.

Only tokens whose prefix is a rule family count as rule IDs, so "UTF-8", "float-32", dates
and issue numbers are never mistaken for one. The families are those of the PyTorch contract
(shared/SEMANTICS.md), listed below by hand; a new family is added here and in the document.
"""

from __future__ import annotations

import ast
import collections
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "semantics.md"
THIS_FILE = pathlib.Path(__file__).resolve()

# The rule families of shared/SEMANTICS.md, plus any this repository adds (none so far).
FAMILIES = (
    "ACT",
    "ADAG",
    "ADAM",
    "ADAMW",
    "ADAPTIVE",
    "AVGPOOL",
    "BCE",
    "BCEL",
    "BN",
    "BN2D",
    "CE",
    "CLIP",
    "CONV",
    "DTYPE",
    "DROP",
    "DROP2D",
    "FLAT",
    "HUB",
    "INIT",
    "L1",
    "LBL",
    "LIN",
    "LINREG",
    "LOGREG",
    "MSE",
    "NLL",
    "PAD",
    "PERC",
    "POOL",
    "RMS",
    "SCAL",
    "SCHED",
    "SGD",
    "SL1",
    "SOFTREG",
    "WD",
)
_FAMILY = "|".join(sorted(FAMILIES, key=len, reverse=True))
# One citation: "CE-6", or a range written "BN-1..8" / "BN-1..BN-8" (every ID in between).
CITATION = re.compile(rf"\b({_FAMILY})-(\d+)([a-z]?)(?:\.\.(?:\1-)?(\d+))?(?!\w)")
# A rule's definition in the document: an anchor line, then its heading.
DEFINITION = re.compile(r'^<a id="([^"]+)"></a>\n### (\S+) · ', re.MULTILINE)
TEST_LOCATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+(?:::\w+)?)`")

SCANNED = ("fnn", "tests", "experiments", "README.md")
TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".json", ".toml", ".cfg", ".ini", ".sh", ".yaml", ".yml"}


def cited_ids(text: str) -> list[str]:
    """Every rule ID that `text` cites, ranges expanded, in order of appearance."""
    ids = []
    for m in CITATION.finditer(text):
        family, first, suffix, last = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if last is None:
            ids.append(f"{family}-{first}{suffix}")
        else:
            ids.extend(f"{family}-{n}" for n in range(first, int(last) + 1))
    return ids


def scanned_files() -> list[pathlib.Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
            continue
        for p in sorted(path.rglob("*")):
            parts = p.relative_to(ROOT).parts
            if (
                p.is_file()
                and p.suffix in TEXT_SUFFIXES
                and p != THIS_FILE  # its examples exercise the regex; they cite nothing
                and not any(s.startswith(".") or s == "__pycache__" for s in parts)
            ):
                files.append(p)
    return files


def doc_text() -> str:
    assert DOC.is_file(), f"{DOC.relative_to(ROOT)} is missing"
    return DOC.read_text(encoding="utf-8")


def rule_blocks(text: str) -> list[tuple[str, str, str]]:
    """(anchor, rule ID, block text) per definition; a block runs to the next anchor or section."""
    matches = list(DEFINITION.finditer(text))
    blocks = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        section = text.find("\n## ", m.end())
        if section != -1:
            end = min(end, section)
        blocks.append((m.group(1), m.group(2), text[m.start() : end]))
    return blocks


def defined_ids() -> set[str]:
    return {rule for _, rule, _ in rule_blocks(doc_text())}


def test_citation_regex_reads_rule_ids_and_nothing_else():
    text = (
        "UTF-8 JSON, float-32, 2026-11-30, issue-10, pytorch #63004, SHA-256, ISO-8601, x-1, "
        "CE-6b2, see CE-6 and BCE-2; BN-1..3 and NLL-1..NLL-2; L1-1 not SL1-1's twin ADAMW-1; "
        "ADAM-2a."
    )
    assert cited_ids(text) == [
        "CE-6",
        "BCE-2",
        "BN-1",
        "BN-2",
        "BN-3",
        "NLL-1",
        "NLL-2",
        "L1-1",
        "SL1-1",
        "ADAMW-1",
        "ADAM-2a",
    ]


def test_every_cited_rule_is_defined():
    defined = defined_ids()
    missing = collections.defaultdict(set)
    for path in scanned_files():
        for rule in cited_ids(path.read_text(encoding="utf-8", errors="replace")):
            if rule not in defined:
                missing[rule].add(str(path.relative_to(ROOT)))
    assert not missing, "rule IDs cited but not defined in docs/semantics.md: " + "; ".join(
        f"{rule} (cited in {', '.join(sorted(files))})" for rule, files in sorted(missing.items())
    )


def test_no_rule_is_defined_twice():
    counts = collections.Counter(rule for _, rule, _ in rule_blocks(doc_text()))
    twice = sorted(rule for rule, n in counts.items() if n > 1)
    assert not twice, f"rules defined more than once in docs/semantics.md: {twice}"


def test_every_rule_heading_is_a_rule_id_with_its_own_anchor():
    text = doc_text()
    blocks = rule_blocks(text)
    assert len(blocks) == text.count("\n### "), "every ### heading must be a rule preceded by its anchor"
    for anchor, rule, _ in blocks:
        assert cited_ids(rule) == [rule], f"heading {rule!r} is not a rule ID of a known family"
        assert anchor == rule.lower(), f"{rule}'s anchor is {anchor!r}, expected {rule.lower()!r}"


def test_every_rule_says_what_torch_does_and_what_fnn_does():
    for _, rule, block in rule_blocks(doc_text()):
        for field in ("- **PyTorch:**", "- **fnn:**", "- **Tested in:**"):
            assert field in block, f"{rule} has no '{field}' line"


def _test_names(path: pathlib.Path) -> set[str]:
    """'test_x' for module-level tests and 'TestY::test_x' for methods of test classes."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return names


def test_every_rule_names_tests_that_exist():
    names: dict[str, set[str]] = {}
    problems = []
    for _, rule, block in rule_blocks(doc_text()):
        locations = TEST_LOCATION.findall(block)
        if not locations:
            problems.append(f"{rule} names no test (`tests/test_x.py::test_y`)")
        for file, name in locations:
            path = ROOT / file
            if not path.is_file():
                problems.append(f"{rule}: {file} does not exist")
                continue
            if file not in names:
                names[file] = _test_names(path)
            if not name.split("::")[-1].startswith("test") or name not in names[file]:
                problems.append(f"{rule}: {file} has no test function {name}")
    assert not problems, "\n".join(problems)


def test_every_defined_family_is_a_known_prefix():
    unknown = sorted({rule.rsplit("-", 1)[0] for rule in defined_ids()} - set(FAMILIES))
    assert not unknown, f"add these rule families to FAMILIES in {pathlib.Path(__file__).name}: {unknown}"


def test_links_into_the_document_reach_an_anchor():
    text = doc_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text)) | {
        # GitHub's anchor for a "## 3. Activations" section heading
        re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
        for h in re.findall(r"^## (.+)$", text, re.MULTILINE)
    }
    links = [("docs/semantics.md", a) for a in re.findall(r"\]\(#([^)]+)\)", text)]
    for path in scanned_files():
        rel = str(path.relative_to(ROOT))
        links += [(rel, a) for a in re.findall(r"semantics\.md#([\w-]+)", path.read_text(errors="replace"))]
    broken = sorted({f"{where}: #{anchor}" for where, anchor in links if anchor not in anchors})
    assert not broken, f"links to anchors that docs/semantics.md does not define: {broken}"


def test_every_listed_family_has_rules_defined():
    empty = sorted(set(FAMILIES) - {rule.rsplit("-", 1)[0] for rule in defined_ids()})
    assert not empty, f"rule families in FAMILIES that docs/semantics.md defines no rule of: {empty}"
