"""One version: CMakeLists.txt's project(VERSION) reaches the module; pyproject.toml must repeat it."""
import re
import tomllib

import baichuan_cpp
from conftest import REPO


def test_module_pyproject_and_cmake_agree():
    cmake = re.search(r"project\(baichuan_cpp VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text()).group(1)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert baichuan_cpp.__version__ == cmake, "the module's version is not CMakeLists.txt's"
    assert pyproject == cmake, f"pyproject.toml says {pyproject}, CMakeLists.txt says {cmake}: keep them equal"
