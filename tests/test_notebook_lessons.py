"""The notebooks read as lessons: an opening markdown cell, "Try this" cells, a closing summary built from
the run's own variables; notebooks/README.md names every notebook and plans a 90-minute workshop.

Structural only (nothing executes here): the notebook tests run each notebook, summary cell included.
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
README = REPO / "notebooks" / "README.md"
# A typed-in figure: "85.8%", "96 %", or a bare decimal such as 0.925 in the text of the summary.
TYPED_FIGURE = re.compile(r"\d\s*%|\d\.\d")


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _parse(source: str) -> ast.Module:
    """A code cell as Python, its IPython magics and shell lines (``%matplotlib``, ``!ls``) left out."""
    return ast.parse(
        "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    )


def _text_constants(tree: ast.AST) -> list[str]:
    """String constants of ``tree``, f-string text included, format specs (like ``.1%``) left out."""
    found: list[str] = []

    def visit(node):
        if isinstance(node, ast.FormattedValue):
            visit(node.value)  # the expression, not its format spec
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _assigned(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opens_with_a_lesson(path):
    first = _cells(path)[0]
    assert first.cell_type == "markdown", (
        f"{path.name}: the first cell must be markdown (what, why, watch for)"
    )
    assert first.source.startswith("# "), f"{path.name}: the opening cell starts with a title"
    assert len(first.source.split()) >= 60, f"{path.name}: the opening cell is too short to say what and why"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_explains_its_stages(path):
    cells = _cells(path)
    code = [c for c in cells if c.cell_type == "code"]
    markdown = [c for c in cells[1:] if c.cell_type == "markdown"]
    # at least one explanation for every three code cells after the opening one
    assert 3 * len(markdown) >= len(code), f"{path.name}: {len(code)} code cells, {len(markdown)} markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_has_try_this(path):
    tries = [c for c in _cells(path) if c.cell_type == "markdown" and "Try this" in c.source]
    assert tries, f"{path.name}: no 'Try this' cell"
    # each one names a parameter of the notebook to change, in backticks
    params = [c for c in _cells(path) if "parameters" in c.metadata.get("tags", [])][0].source
    names = {n.target.id for n in ast.parse(params).body if isinstance(n, ast.AnnAssign)}
    named = set(re.findall(r"`(\w+)\s*=", "\n".join(c.source for c in tries)))
    assert named & names, f"{path.name}: the 'Try this' cells name no parameter as `name=value`"
    assert named <= names, f"{path.name}: 'Try this' names {named - names}, not parameters of the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ends_with_a_summary_from_the_run(path):
    cells = _cells(path)
    last = cells[-1]
    assert last.cell_type == "code", f"{path.name}: the last cell must be the summary code cell"
    assert "Markdown(" in last.source, f"{path.name}: the summary is displayed as Markdown"
    tree = _parse(last.source)
    earlier = set().union(*(_assigned(_parse(c.source)) for c in cells[:-1] if c.cell_type == "code"))
    assert _loaded(tree) & earlier, f"{path.name}: the summary reads no variable of the run"
    typed = [s for s in _text_constants(tree) if TYPED_FIGURE.search(s)]
    assert not typed, f"{path.name}: figures typed into the summary: {typed}"


def test_typed_figures_are_caught():
    assert _text_constants(ast.parse('f"{x:.1%} of {n}"')) == [" of "]
    assert TYPED_FIGURE.search("reached 92.6% on test") and TYPED_FIGURE.search("accuracy 0.93")
    assert not TYPED_FIGURE.search("over 3 seeds, the best row")


def test_readme_names_every_notebook_and_plans_90_minutes():
    text = README.read_text()
    for path in NOTEBOOKS:
        assert path.name in text, f"notebooks/README.md does not name {path.name}"
    assert "make lab" in text
    # the workshop plan is a table whose first column holds each segment's minutes
    plan = text[text.index("## Workshop plan") :]
    minutes = [int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", plan, flags=re.M)]
    assert minutes and sum(minutes) == 90, minutes
