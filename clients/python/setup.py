"""Generates the protobuf modules from the repository's schema/ before building, so they are
never hand-edited and never stale. Install from a checkout: `pip install ./clients/python`."""

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.normpath(os.path.join(HERE, "..", "..", "schema"))


def generate():
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(glob.glob(os.path.join(SCHEMA, "hooteproto", "v1", "*.proto")))
    if not protos:
        raise SystemExit(f"no schema at {SCHEMA}: install from a checkout of the repository")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", f"-I{SCHEMA}", f"-I{wkt}", f"--python_out={HERE}", f"--pyi_out={HERE}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on schema/")
    with open(os.path.join(HERE, "hooteproto", "v1", "__init__.py"), "w") as init:
        init.write('"""Generated from schema/ at build time by setup.py; never edit."""\n')


class GenerateThenBuild(build_py):
    def run(self):
        generate()
        super().run()


# setuptools looks for the hooteproto.v1 package directory before any command runs, so the
# modules are generated as soon as the build loads this file (grpcio-tools is a build requirement).
generate()
setup(cmdclass={"build_py": GenerateThenBuild})
