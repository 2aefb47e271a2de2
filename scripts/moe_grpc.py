"""Python stubs for moe.v1.InferenceService, grpc.health.v1 and reflection, made on first use.

Debian's python3-grpc-tools ships a protoc too old for proto3 `optional`, so the stubs are made
with the system protoc and /usr/bin/grpc_python_plugin into a cache folder, then imported.
Health and reflection stubs are made from /usr/share/grpc-proto (package grpc-proto) into a
folder named grpc_health (a folder named grpc would hide the grpc package itself).

    import moe_grpc
    pb, stubs = moe_grpc.inference()
"""
import importlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("MOE_PY_STUBS", os.path.join(ROOT, "build", "python-stubs"))
GRPC_PROTO = "/usr/share/grpc-proto"


def _protoc(include, proto, out):
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "-I", include, f"--python_out={out}", f"--grpc_python_out={out}",
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", proto],
                   check=True)


def _ensure():
    src = os.path.join(ROOT, "proto", "inference.proto")
    made = os.path.join(CACHE, "inference_pb2.py")
    if not os.path.exists(made) or os.path.getmtime(made) < os.path.getmtime(src):
        _protoc(os.path.join(ROOT, "proto"), src, CACHE)
    health = os.path.join(CACHE, "grpc_health")
    if not os.path.exists(os.path.join(health, "health_pb2.py")):
        os.makedirs(health, exist_ok=True)
        for proto in ("grpc/health/v1/health.proto", "grpc/reflection/v1alpha/reflection.proto"):
            path = os.path.join(GRPC_PROTO, proto)
            if not os.path.exists(path):
                continue
            # Copy under a flat name so the generated modules import each other plainly.
            flat = os.path.join(health, os.path.basename(proto))
            with open(path) as f, open(flat, "w") as g:
                g.write(f.read())
            _protoc(health, flat, health)
    if CACHE not in sys.path:
        sys.path.insert(0, CACHE)
    if health not in sys.path:
        sys.path.insert(0, health)


def inference():
    """(messages module, stubs module) for moe.v1."""
    _ensure()
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


def health():
    _ensure()
    return importlib.import_module("health_pb2"), importlib.import_module("health_pb2_grpc")


def reflection():
    _ensure()
    return importlib.import_module("reflection_pb2"), importlib.import_module("reflection_pb2_grpc")
