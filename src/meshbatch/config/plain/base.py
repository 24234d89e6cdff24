"""What every run-time config class shares: a frozen, slotted msgspec struct, keyword-only, unknown keys refused.

The serving process reads the config as these plain classes (meshbatch.config.plain), built in one call from the
validated config's JSON (`decode`); the pydantic models of `meshbatch.config.model` stay the one definition of
the file's shape, and validate it in a child process (meshbatch.runtime.validate_child).
`tests/unit/test_plain_config.py` proves the two agree: the same classes, fields and values for every example
config.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Plain(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A config object: immutable (`msgspec.structs.replace` makes a changed copy), compared by value."""

    # The fields that hold secrets, and their kind (`value`, `url`, `values`): the marks of the models' fields
    # (meshbatch.config.redact), which every display of the config redacts.
    SECRETS: ClassVar[dict[str, str]] = {}
