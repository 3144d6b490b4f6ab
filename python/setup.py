"""Builds and installs the gismo Python package with pip:

    /usr/bin/python3 -m pip install --no-build-isolation \\
        --break-system-packages ./python

The extension is built by the project's CMake (the repository root is the
parent of this directory, or $GISMO_SOURCE_DIR); libgismo.so.0 is bundled in
the package next to it, so nothing else needs installing.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.environ.get("GISMO_SOURCE_DIR", HERE.parent)).resolve()


def project_version():
    text = (SOURCE / "CMakeLists.txt").read_text()
    match = re.search(r"project\(gismo VERSION ([0-9.]+)", text)
    return match.group(1) if match else "0.0.0"


class CMakeBuild(build_ext):
    """Builds gismo._gismo and libgismo with CMake and puts both into the
    package directory."""

    def build_extension(self, ext):
        build = Path(self.build_temp).resolve() / "cmake"
        subprocess.check_call([
            "cmake", "-S", str(SOURCE), "-B", str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGISMO_BUILD_TOOLS=OFF", "-DGISMO_BUILD_TESTS=OFF",
            "-DGISMO_BUILD_BENCH=OFF",
            "-DGISMO_BUILD_PYTHON=ON", "-DGISMO_PYTHON_BUNDLE=ON",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ])
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", str(build), "--target",
                               "gismo_python", "--parallel", jobs])
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        built = next((build / "python" / "gismo").glob("_gismo*.so"))
        shutil.copy2(built, target)
        shutil.copy2(build / "src" / "libgismo.so.0",
                     target.parent / "libgismo.so.0")


setup(
    name="gismo",
    version=project_version(),
    description="gismo shared-memory object store: zero-copy buffers and "
                "numpy arrays",
    packages=["gismo"],
    ext_modules=[Extension("gismo._gismo", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    extras_require={"numpy": ["numpy"]},
    zip_safe=False,
)
