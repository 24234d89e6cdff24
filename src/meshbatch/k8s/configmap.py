"""The ConfigMap (the config as the pod reads it, and the files it reads) and the Secret (secret values as
environment variables, secret files), with the digest of both for the pod template (a change rolls the pods)."""

from __future__ import annotations

import hashlib

from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.pack import Packed


def config_map_name(options: RenderOptions) -> str:
    return f"{options.name}-config"


def secret_name(options: RenderOptions) -> str:
    return f"{options.name}-secrets"


def digest(packed: Packed) -> str:
    """Of everything the pod reads: the config, its files, its secrets (only this hash of them is shown)."""
    sha = hashlib.sha256(packed.text.encode())
    for key, value in sorted(packed.files.items()):
        sha.update(b"\0" + key.encode() + b"\0" + value)
    for key, text in sorted(packed.secret_data.items()):
        sha.update(b"\0" + key.encode() + b"\0" + text.encode())
    return sha.hexdigest()[:16]


def config_map(options: RenderOptions, packed: Packed) -> Manifest:
    data: dict[str, str] = {options.config_file: packed.text}
    binary: dict[str, str] = {}
    for key, content in sorted(packed.files.items()):
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:  # a descriptor set, a DER certificate: kept byte for byte
            import base64

            binary[key] = base64.b64encode(content).decode()
    out: Manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": options.metadata(config_map_name(options)),
                     "data": data}
    if binary:
        out["binaryData"] = binary
    return out


def secret(options: RenderOptions, packed: Packed) -> Manifest | None:
    if not packed.secret_data:
        return None
    return {"apiVersion": "v1", "kind": "Secret", "metadata": options.metadata(secret_name(options)),
            "type": "Opaque", "data": packed.secret_data}


__all__ = ["config_map", "config_map_name", "digest", "secret", "secret_name"]
