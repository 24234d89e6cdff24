"""Protos compiled for the tests with grpcio-tools: a descriptor set (`protoc --include_imports -o`) and the
Python modules, once per process, in a temporary directory put on sys.path."""

from __future__ import annotations

import atexit
import functools
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import google.rpc
import grpc_tools
from grpc_tools import protoc

import meshbatch.grpc

PROTOS = Path(__file__).parent / "protos"
ENVELOPE_PROTO = Path(meshbatch.grpc.__file__).parent / "meshbatch_batch.proto"


@functools.cache
def _out() -> Path:
    out = Path(tempfile.mkdtemp(prefix="meshbatch-protos-"))
    atexit.register(shutil.rmtree, out, True)
    sys.path.insert(0, str(out))
    return out


def _includes() -> list[str]:
    googleapis = Path(next(iter(google.rpc.__path__))).parent.parent  # site-packages: google/rpc/status.proto
    return [f"-I{PROTOS}", f"-I{ENVELOPE_PROTO.parent}", f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
            f"-I{googleapis}"]


@functools.cache
def compiled(name: str) -> tuple[Path, ModuleType, ModuleType]:
    """(descriptor set file, the _pb2 module, the _pb2_grpc module) of `name`.proto (testbed/protos or the
    envelope's own meshbatch_batch.proto)."""
    out = _out()
    descriptor_set = out / f"{name}.pb"
    code = protoc.main(["protoc", *_includes(), f"--python_out={out}", f"--grpc_python_out={out}",
                        "--include_imports", f"--descriptor_set_out={descriptor_set}", f"{name}.proto"])
    if code != 0:
        raise RuntimeError(f"protoc failed on {name}.proto ({code})")
    importlib.invalidate_caches()
    return descriptor_set, importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")


__all__ = ["ENVELOPE_PROTO", "PROTOS", "compiled"]
