"""The public API: every name mmkit exports resolves, and the package import stays light."""

import subprocess
import sys

import mmkit


def test_every_public_name_resolves():
    for name in mmkit.__all__:
        assert getattr(mmkit, name) is not None, name
    assert "make_loader" in dir(mmkit)


def test_import_mmkit_does_not_import_torch():
    # `mmkit run` and `python -m mmkit.train` import the package first; the heavy modules load on use.
    code = "import sys, mmkit, mmkit.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
