"""setuptools glue: generate the gRPC stubs before building (see gen_stubs.py).

Metadata lives in pyproject.toml; this file only adds the stub generation to
build_py (which both `pip install` and `pip install -e` run) and the
dependency bounds that come with the generator.
"""
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gen_stubs  # noqa: E402  (lives beside this file)


class BuildPyWithStubs(build_py):
    """build_py that first writes tensord/v1/*_pb2*.py from the .proto.

    The stubs are generated when the command is configured, not when it runs:
    egg_info (run by pip before any build, editable or not) already asks
    build_py for its source files, and tensord.v1 must exist by then.
    """

    def finalize_options(self) -> None:
        gen_stubs.generate()
        super().finalize_options()


setup(
    cmdclass={"build_py": BuildPyWithStubs},
    install_requires=gen_stubs.runtime_requirements(),
)
