"""Fixtures of the parity suite: the real tensord binary and the PyTorch reference.

The reference runs in its own interpreter (PARITY_TORCH_PYTHON, default
`.venv-parity/bin/python`, made by `make parity-venv`) over every generated
case at once, before the first comparison; its results are cached per run.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
from typing import Iterator

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import cases as case_generator  # noqa: E402
import program  # noqa: E402

_spec = importlib.util.spec_from_file_location("e2e_conftest", ROOT / "tests" / "e2e" / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

SEED = int(os.environ.get("PARITY_SEED", "0"))
# abspath, not resolve(): a venv's python is a symlink that must stay unresolved.
TORCH_PYTHON = os.path.abspath(os.environ.get("PARITY_TORCH_PYTHON", str(ROOT / ".venv-parity" / "bin" / "python")))
CASES = case_generator.generate(SEED)


@pytest.fixture(scope="session")
def reference() -> dict:
    """Case id -> PyTorch's result, computed once for the whole run."""
    # Without the reference nothing can be compared: stop the run at once
    # rather than fail every case the same way.
    if not pathlib.Path(TORCH_PYTHON).exists():
        pytest.exit(f"no reference interpreter at {TORCH_PYTHON}: run `make parity-venv` "
                    "or set PARITY_TORCH_PYTHON to a Python that has torch", returncode=1)
    with tempfile.TemporaryDirectory() as tmp:
        cases_path, results_path = pathlib.Path(tmp, "cases.pickle"), pathlib.Path(tmp, "results.pickle")
        cases_path.write_bytes(pickle.dumps([tuple(c) for c in CASES]))
        run = subprocess.run([TORCH_PYTHON, str(HERE / "reference.py"), str(cases_path), str(results_path)],
                             cwd=HERE, timeout=1800, capture_output=True, text=True)
        if run.returncode != 0:
            pytest.exit(f"the PyTorch reference failed ({TORCH_PYTHON}):\n{run.stderr[-3000:]}", returncode=1)
        results = pickle.loads(results_path.read_bytes())
    print(f"\nparity reference: torch {results['torch']}, {len(results['results'])} cases, seed {SEED}")
    return results["results"]


@pytest.fixture(scope="session")
def td() -> Iterator:
    import tensord

    server = _e2e.ServerProcess("--max-memory", "1G")
    client = tensord.connect(server.address, timeout=60)
    yield client
    client.close()
    code = server.stop()
    assert code == 0, f"tensord exited with {code}: {server.stderr_text()}"
