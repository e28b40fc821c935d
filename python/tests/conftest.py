"""Shared fixtures: the tiny reference checkpoint (../shared/reference/b2-7b-tiny next to the repo)
and its golden outputs from the official code."""
import json
import os
from pathlib import Path

import pytest

try:
    import baichuan_cpp  # noqa: F401
except ImportError as e:  # a clear message instead of one error per test
    pytest.exit(f"cannot import baichuan_cpp ({e}): build it (scripts/test_python.sh) and put "
                "<build>/python on PYTHONPATH", returncode=2)

REPO = Path(__file__).resolve().parents[2]
TINY = Path(os.environ.get("BAICHUAN_REFERENCE_DIR", REPO.parent / "shared" / "reference")) / "b2-7b-tiny"


@pytest.fixture(scope="session")
def tiny_path():
    if not (TINY / "golden.json").exists():
        pytest.skip(f"reference checkpoint {TINY} is absent")
    return str(TINY)


@pytest.fixture(scope="session")
def golden(tiny_path):
    return json.loads((Path(tiny_path) / "golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def model(tiny_path):
    # F32 KV cache: the golden comparisons want the exact attention inputs.
    return baichuan_cpp.Model(tiny_path, threads=2, kv_type="f32")


def until_eos(ids, eos=2):
    """Golden greedy tokens were generated without stopping at EOS: keep what precedes it."""
    return ids[: ids.index(eos)] if eos in ids else ids
