"""Shared fixtures: the tiny reference checkpoints (../shared/reference next to the repo) and their
golden outputs from the official code."""
import array
import json
import math
import os
from pathlib import Path

import pytest

try:
    import baichuan_cpp  # noqa: F401
except ImportError as e:  # a clear message instead of one error per test
    pytest.exit(f"cannot import baichuan_cpp ({e}): build it (scripts/test_python.sh) and put "
                "<build>/python on PYTHONPATH", returncode=2)

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("BAICHUAN_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
TINY = REFERENCE / "b2-7b-tiny"


def reference_path(name):
    """A reference checkpoint folder, or a skip when ../shared is absent."""
    folder = REFERENCE / name
    if not (folder / "golden.json").exists():
        pytest.skip(f"reference checkpoint {folder} is absent")
    return str(folder)


@pytest.fixture(scope="session")
def tiny_path():
    return reference_path("b2-7b-tiny")


def read_golden(folder):
    """A reference checkpoint's golden.json."""
    return json.loads((Path(folder) / "golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def golden(tiny_path):
    return read_golden(tiny_path)


def exact_model(folder):
    """A Model with an F32 KV cache: the golden comparisons want the exact attention inputs."""
    return baichuan_cpp.Model(folder, threads=2, kv_type="f32")


def golden_logits(folder, prompt):
    """The official last-position logits of one of golden.json's prompts."""
    return array.array("f", (Path(folder) / prompt["last_logits_file"]).read_bytes())


def max_relative_error(got, want):
    """max |got - want| / max |want| (tests/golden.h's measure): infinite when the lengths differ or a
    value is NaN, so that a bound fails instead of passing."""
    if len(got) != len(want):
        return math.inf
    worst = max(abs(a - b) for a, b in zip(got, want))
    return math.inf if math.isnan(worst) else worst / max(abs(x) for x in want)


@pytest.fixture(scope="session")
def model(tiny_path):
    return exact_model(tiny_path)


def until_eos(ids, eos=2):
    """Golden greedy tokens were generated without stopping at EOS: keep what precedes it."""
    return ids[: ids.index(eos)] if eos in ids else ids
