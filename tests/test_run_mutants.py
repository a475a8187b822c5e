"""The mutation runner itself, on a tiny package named mmkit (no torch: seconds)."""

from pathlib import Path

import pytest
from run_mutants import Mutant, MutantError, apply_mutant, check_baseline, run_mutant

TEST = "tests/test_add.py::test_add"


def _repo(tmp_path: Path, skip: bool = False) -> Path:
    repo = tmp_path / "src"
    (repo / "mmkit").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    (repo / "mmkit" / "__init__.py").write_text("def add(a, b):\n    return a + b  # the sum\n")
    body = "    pytest.skip('no data')\n" if skip else "    assert add(2, 3) == 5\n"
    # the venv's mmkit (another checkout) has no `add`: this import proves the copy's mmkit is the one run
    (repo / "tests" / "test_add.py").write_text(
        f"import pytest\n\nfrom mmkit import add\n\n\ndef test_add():\n{body}"
    )
    return repo


def _mutant(old: str, new: str, name: str = "m") -> Mutant:
    return Mutant(name=name, file="mmkit/__init__.py", old=old, new=new, tests=(TEST,))


def test_a_harmful_mutant_is_killed_and_a_harmless_one_survives(tmp_path):
    repo = _repo(tmp_path)
    assert check_baseline([_mutant("a + b", "a - b")], repo).status == "passed"
    assert run_mutant(_mutant("a + b", "a - b"), repo).status == "killed"
    harmless = run_mutant(_mutant("# the sum", "# the total"), repo)
    assert harmless.status == "survived", harmless.detail
    assert "a + b" in (repo / "mmkit" / "__init__.py").read_text()  # only the copy was mutated


@pytest.mark.parametrize("old", ["a * b", "a"], ids=["gone", "twice"])
def test_a_mutant_whose_text_is_gone_or_ambiguous_is_an_error(tmp_path, old):
    repo = _repo(tmp_path)
    with pytest.raises(MutantError, match="mutant 'disarmed'"):
        apply_mutant(repo, _mutant(old, "b", name="disarmed"))
    out = run_mutant(_mutant(old, "b", name="disarmed"), repo)
    assert out.status == "error" and "tests/mutants.py" in out.detail


def test_named_tests_that_skip_or_do_not_exist_are_errors(tmp_path):
    assert check_baseline([_mutant("a + b", "a - b")], _repo(tmp_path / "s", skip=True)).status == "error"
    missing = Mutant("m", "mmkit/__init__.py", "a + b", "a - b", ("tests/test_add.py::test_gone",))
    assert run_mutant(missing, _repo(tmp_path / "m")).status == "error"


def test_a_mutant_that_breaks_the_import_is_an_error_not_a_kill(tmp_path):
    # a syntax error fails collection (pytest exit 2 or 4): no test caught a defect, so it must not count
    broken = run_mutant(_mutant("a + b", "a +"), _repo(tmp_path))
    assert broken.status == "error" and "pytest exit" in broken.detail
