"""A service's own batch method, read from a FileDescriptorSet (`protoc --include_imports -o FILE`): which fields
of its request and response carry the items, the results and the per-item statuses (AIP-231's BatchGet).

Everything is checked once, when the config is loaded, with a message that names what is wrong: the file is a
descriptor set, the batch method exists and is unary, `items_field` is a repeated message field of its request,
`results_field` one of its response, `statuses_field` a repeated `google.rpc.Status`. `unary_problem` checks that a
caller's method takes the items' message type and returns the results' one. The hot path then needs only field
numbers (`BatchShape`); protobuf (the `grpc` extra) is imported here, and only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshbatch import extras

STATUS_TYPE = "google.rpc.Status"
_FEATURE = "batch.grpc.descriptor_set"


class DescriptorError(ValueError):
    """A descriptor set or a name in it that does not fit; `key` is the config key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class BatchShape:
    """Field numbers and message types of a batch method, resolved from descriptors."""

    method: str  # /package.Service/Method
    items: int
    results: int
    statuses: int | None
    item_type: str  # full names of the element types
    result_type: str
    pool: Any  # the DescriptorPool, for unary_problem

    def unary_problem(self, path: str) -> str | None:
        """Why a caller's method cannot be batched into this one (unknown, streaming, other message types)."""
        return _unary_problem(self, path)


def _split(path: str) -> tuple[str, str]:
    service, _, method = path.strip("/").rpartition("/")
    return service, method


def _method(pool: Any, path: str, key: str) -> Any:
    service_name, method_name = _split(path)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        raise DescriptorError(key, f"the descriptor set has no service {service_name!r}") from None
    method = service.methods_by_name.get(method_name)
    if method is None:
        known = ", ".join(sorted(service.methods_by_name)) or "none"
        raise DescriptorError(key, f"service {service_name} has no method {method_name!r} (it has: {known})")
    if method.client_streaming or method.server_streaming:
        raise DescriptorError(key, f"{path} is a streaming method; only unary methods are batched")
    return method


def _repeated_message(message: Any, name: str, key: str, element: str | None = None) -> Any:
    found = message.fields_by_name.get(name)
    if found is None:
        known = ", ".join(sorted(message.fields_by_name)) or "none"
        raise DescriptorError(key, f"message {message.full_name} has no field {name!r} (it has: {known})")
    if not found.is_repeated or found.message_type is None or found.message_type.GetOptions().map_entry:
        raise DescriptorError(key, f"field {message.full_name}.{name} must be a repeated message field")
    if element is not None and found.message_type.full_name != element:
        raise DescriptorError(key, f"field {message.full_name}.{name} holds {found.message_type.full_name}, "
                                   f"expected {element}")
    return found


def _pool(data: bytes) -> Any:
    descriptor_pb2 = extras.import_module("google.protobuf.descriptor_pb2", "grpc", _FEATURE)
    descriptor_pool = extras.import_module("google.protobuf.descriptor_pool", "grpc", _FEATURE)
    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(data)
    except Exception as exc:
        raise DescriptorError("descriptor_set", f"not a FileDescriptorSet ({exc})") from None
    if not files.file:
        raise DescriptorError("descriptor_set", "the descriptor set holds no file")
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        try:
            pool.Add(proto)
        except Exception as exc:
            raise DescriptorError("descriptor_set", f"{proto.name}: {exc} (write the set with "
                                                    "protoc --include_imports so that it holds its imports)") from None
    return pool


def load(path: str, batch_method: str, items_field: str, results_field: str,
         statuses_field: str | None = None) -> BatchShape:
    """The batch method's shape; DescriptorError (its `key` the config key at fault), or MissingExtraError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DescriptorError("descriptor_set", f"cannot read {path}: {exc.strerror or exc}") from None
    pool = _pool(data)
    try:
        method = _method(pool, batch_method, "batch_method")
        items = _repeated_message(method.input_type, items_field, "items_field")
        results = _repeated_message(method.output_type, results_field, "results_field")
        statuses = None
        if statuses_field is not None:
            statuses = _repeated_message(method.output_type, statuses_field, "statuses_field", STATUS_TYPE)
    except DescriptorError:
        raise
    except Exception as exc:  # an import the set lacks shows up when a type is first resolved
        raise DescriptorError("descriptor_set", f"{exc} (write the set with protoc --include_imports)") from None
    return BatchShape(batch_method, items.number, results.number, None if statuses is None else statuses.number,
                      items.message_type.full_name, results.message_type.full_name, pool)


def _unary_problem(shape: BatchShape, path: str) -> str | None:
    try:
        method = _method(shape.pool, path, "path")
    except DescriptorError as exc:
        return str(exc)
    except Exception as exc:
        return f"{path}: {exc}"
    if method.input_type.full_name != shape.item_type:
        return (f"{path} takes {method.input_type.full_name}, but {shape.method} batches {shape.item_type}")
    if method.output_type.full_name != shape.result_type:
        return (f"{path} returns {method.output_type.full_name}, but {shape.method} answers "
                f"{shape.result_type}")
    return None


__all__ = ["STATUS_TYPE", "BatchShape", "DescriptorError", "load"]
