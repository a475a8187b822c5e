"""Mutation check: put each known defect back into a copy of mmkit and see that its tests fail.

Each mutant in ``tests/mutants.py`` names a file, an exact piece of text, the text that reintroduces a
defect and the test node ids that must catch it. For each mutant this script copies ``mmkit/``, ``tests/``,
``pyproject.toml`` (and the mutant's ``needs``) into a temporary folder, replaces the text (it must occur
exactly once, or the mutant is an error: a refactor must not silently disarm it), and runs the named tests
there with pytest (cwd and PYTHONPATH = the copy, so the venv's editable install of another checkout cannot
win). A failing run kills the mutant; a passing one lets it survive.

First, the named tests run once on an unmutated copy: each must pass and none may skip, otherwise a
mutant would count as killed by a test that fails anyway, or survive one that never ran.

Exit status 0 only when the baseline passes and every mutant is killed.

Example:
    $ python tests/run_mutants.py            # every mutant, 2 at a time
    $ python tests/run_mutants.py -k crossfit --jobs 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALWAYS_COPIED = ("mmkit", "tests", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ipynb_checkpoints")


@dataclass(frozen=True)
class Mutant:
    """One defect put back: in ``file`` (relative to the repository), ``old`` (occurring exactly once)
    becomes ``new``; each of ``tests`` (pytest node ids relative to the repository) must then fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    needs: tuple[str, ...] = ()  # further paths the tests read (e.g. "notebooks")


@dataclass
class Outcome:
    name: str
    status: str  # "killed", "survived" or "error"
    seconds: float
    detail: str = ""


class MutantError(ValueError):
    """A mutant that cannot be applied (its text is gone or ambiguous) or names tests that do not run."""


def copy_repo(repo: Path, dest: Path, needs: tuple[str, ...] = ()) -> Path:
    """Copy the parts of ``repo`` the tests need into ``dest/repo`` and return that folder."""
    root = dest / "repo"
    root.mkdir(parents=True)
    for rel in (*ALWAYS_COPIED, *needs):
        src = repo / rel
        if src.is_dir():
            shutil.copytree(src, root / rel, ignore=IGNORED)
        elif src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
        else:
            raise MutantError(f"{src}: named for copying but not in the repository")
    return root


def apply_mutant(root: Path, mutant: Mutant) -> None:
    """Replace ``mutant.old`` with ``mutant.new`` in ``root / mutant.file``; the old text must occur
    exactly once, else ``MutantError`` naming the mutant (update its text in tests/mutants.py)."""
    path = root / mutant.file
    if not path.is_file():
        raise MutantError(f"mutant {mutant.name!r}: {mutant.file} does not exist; update tests/mutants.py")
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise MutantError(
            f"mutant {mutant.name!r}: its old text occurs {count} times in {mutant.file} (must be exactly "
            f"once); the code moved: update the mutant in tests/mutants.py so it still puts the defect back"
        )
    if mutant.old == mutant.new:
        raise MutantError(f"mutant {mutant.name!r}: old and new text are the same")
    path.write_text(text.replace(mutant.old, mutant.new))


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    # two mutants run side by side on small machines; their tests are tiny, one thread each is enough
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_import_origin(root: Path, python: str = sys.executable) -> None:
    """Raise unless ``import mmkit`` run in ``root`` with its environment resolves to ``root/mmkit``."""
    probe = "import importlib.util; print(importlib.util.find_spec('mmkit').origin)"
    out = subprocess.run(
        [python, "-c", probe], cwd=root, env=_env(root), capture_output=True, text=True, check=True
    ).stdout.strip()
    if Path(out).resolve() != (root / "mmkit" / "__init__.py").resolve():
        raise MutantError(f"in the copy {root}, `import mmkit` resolves to {out}, not the copy's mmkit")


def run_tests(root: Path, tests: tuple[str, ...], timeout: float, python: str = sys.executable) -> dict:
    """Run ``tests`` in ``root``; {"rc", "passed", "failed", "skipped", "seconds", "tail"}."""
    report = root / "mutants-junit.xml"
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--junitxml={report}", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        rc, tail = -1, f"timed out after {timeout:.0f} s"
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    reasons = []  # why the first failing test failed (the mutant's effect, shown beside "killed")
    if report.exists():
        root_el = ET.parse(report).getroot()
        for suite in root_el.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for case in root_el.iter("testcase"):
            for bad in list(case.iter("failure")) + list(case.iter("error")):
                reasons.append(f"{case.get('name')}: {(bad.get('message') or '').splitlines()[0][:140]}")
    failed = counts["failures"] + counts["errors"]
    return {
        "rc": rc,
        "passed": counts["tests"] - failed - counts["skipped"],
        "failed": failed,
        "skipped": counts["skipped"],
        "seconds": time.perf_counter() - start,
        "tail": tail,
        "reason": reasons[0] if reasons else "",
    }


def run_mutant(mutant: Mutant, repo: Path = REPO, timeout: float = 180.0) -> Outcome:
    """Apply ``mutant`` to a fresh copy of ``repo`` and run its tests: killed, survived or error."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmkit-mutant-") as tmp:
        try:
            root = copy_repo(repo, Path(tmp), mutant.needs)
            apply_mutant(root, mutant)
            check_import_origin(root)
        except MutantError as err:
            return Outcome(mutant.name, "error", time.perf_counter() - start, str(err))
        result = run_tests(root, mutant.tests, timeout)
    seconds = time.perf_counter() - start
    if result["rc"] == 0:
        return Outcome(
            mutant.name, "survived", seconds, f"{result['passed']} passed: {', '.join(mutant.tests)}"
        )
    if result["rc"] == 1 and result["failed"]:  # a test's assertion (or the code under it) failed
        return Outcome(mutant.name, "killed", seconds, f"{result['failed']} failed: {result['reason']}")
    # A timeout or a collection/import error (exit 2) says the mutant broke the copy, not that a test
    # caught the defect it names: an error, so a mistyped mutant cannot pass as killed.
    why = "timed out" if result["rc"] == -1 else f"pytest exit {result['rc']}"
    return Outcome(mutant.name, "error", seconds, f"{why}: {result['tail'][-600:]}")


def check_baseline(mutants: list[Mutant], repo: Path = REPO, timeout: float = 300.0) -> Outcome:
    """Every named test passes, and none skips, on an unmutated copy."""
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    needs = tuple(dict.fromkeys(n for m in mutants for n in m.needs))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmkit-mutant-") as tmp:
        try:
            root = copy_repo(repo, Path(tmp), needs)
            check_import_origin(root)
        except MutantError as err:
            return Outcome("baseline", "error", time.perf_counter() - start, str(err))
        result = run_tests(root, tests, timeout)
    seconds = time.perf_counter() - start
    if result["rc"] != 0 or result["skipped"] or result["passed"] < len(tests):
        return Outcome(
            "baseline",
            "error",
            seconds,
            f"the named tests must pass unmutated: {result['passed']} passed, {result['failed']} failed, "
            f"{result['skipped']} skipped of {len(tests)} named\n{result['tail']}",
        )
    return Outcome("baseline", "passed", seconds, f"{result['passed']} tests")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant's tests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mutants import MUTANTS

    names = [m.name for m in MUTANTS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        print(f"tests/mutants.py: mutant names must be unique; repeated: {repeated}")
        return 2
    chosen = [m for m in MUTANTS if args.k in m.name]
    if not chosen:
        print(f"no mutant's name contains {args.k!r}; names: {names}")
        return 2
    start = time.perf_counter()
    if not args.no_baseline:
        base = check_baseline(chosen, timeout=2 * args.timeout)
        print(f"baseline  {base.status:8s} {base.seconds:6.1f} s  {base.detail}", flush=True)
        if base.status != "passed":
            return 1
    outcomes = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for out in pool.map(lambda m: run_mutant(m, timeout=args.timeout), chosen):
            print(f"{out.name:44s} {out.status:8s} {out.seconds:6.1f} s  {out.detail}", flush=True)
            outcomes.append(out)
    tally = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "error")}
    print(
        f"mutants: {tally['killed']} killed, {tally['survived']} survived, {tally['error']} errors "
        f"of {len(outcomes)} ({time.perf_counter() - start:.0f} s)"
    )
    return 0 if tally["killed"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
