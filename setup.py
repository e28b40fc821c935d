"""`pip install .` for the Python module baichuan_cpp: builds the native part with the project's own
CMake build (only its module target) and packages it with python/baichuan_cpp. Metadata is in
pyproject.toml. BAICHUAN_CMAKE_BUILD_DIR picks the CMake build directory (default
build/python-wheel), so an existing build can be reused; CMAKE_BUILD_PARALLEL_LEVEL sets the jobs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REPO = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("BAICHUAN_CMAKE_BUILD_DIR") or REPO / "build" / "python-wheel").resolve()


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        # A venv's interpreter is a link to its base; naming the base keeps a shared build directory
        # from being reconfigured for every venv.
        python = getattr(sys, "_base_executable", None) or sys.executable
        configure = ["cmake", "-S", str(REPO), "-B", str(BUILD), "-DBAICHUAN_PYTHON=ON",
                     f"-DPython_EXECUTABLE={python}"]
        if not (BUILD / "CMakeCache.txt").exists():
            # A new build directory builds only what the module needs; an existing one (say the
            # test suite's) keeps its other settings.
            configure += ["-DCMAKE_BUILD_TYPE=Release", "-DBAICHUAN_TESTS=OFF", "-DBAICHUAN_BENCH=OFF"]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(BUILD), "--target", "baichuan_python", "-j", jobs], check=True)
        built = BUILD / "python" / self.get_ext_filename(ext.name)
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


# setuptools' own scratch space (build/, *.egg-info) goes with the CMake build, not into the source tree.
SCRATCH = BUILD / "setuptools"
SCRATCH.mkdir(parents=True, exist_ok=True)
setup(
    ext_modules=[Extension("baichuan_cpp._native", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": str(SCRATCH)}, "egg_info": {"egg_base": str(SCRATCH)}},
)
