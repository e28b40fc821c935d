"""The kernel environment variables (BAICHUAN_CPU, BAICHUAN_MATMUL_PRECISION) are read once per process,
so each case runs in a child interpreter: a bad value must stop Model() with a ValueError naming it,
as the CLI stops at start-up, instead of being silently ignored."""
import os
import subprocess
import sys

import pytest

LOAD = "import baichuan_cpp\ntry:\n    baichuan_cpp.Model('/nonexistent/model.gguf')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"


def load_with(**env):
    child_env = dict(os.environ, **env)
    run = subprocess.run([sys.executable, "-c", LOAD], env=child_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.mark.parametrize("variable, value, named", [
    ("BAICHUAN_MATMUL_PRECISION", "fastest", "unknown precision"),
    ("BAICHUAN_CPU", "avx1024", "unknown kernel path"),
])
def test_unknown_value_is_refused(variable, value, named):
    out = load_with(**{variable: value})
    assert out.startswith("ValueError"), out
    assert f"{variable}={value}" in out and named in out, out


def test_known_values_reach_the_file_check():
    # Good values pass the environment check, so the missing file is what is reported.
    out = load_with(BAICHUAN_MATMUL_PRECISION="medium", BAICHUAN_CPU="scalar")
    assert out.startswith("FileNotFoundError"), out
