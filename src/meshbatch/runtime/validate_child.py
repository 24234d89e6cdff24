"""The process that validates a config for `meshbatch run` (at start and on each SIGHUP): `python -m
meshbatch.runtime.validate_child FILE`.

It loads and checks FILE exactly as `meshbatch check` does (size and alias bounds, `${NAME}` from the
environment, every error with its path, every check of meaning) and writes one JSON document to stdout:
`{"ok": true, "config": CONFIG, "notes": [...]}`, CONFIG the validated config as the models dump it (the plain
run-time classes are built from it: meshbatch.config.plain), or `{"ok": false, "problems": [{"path", "message"},
...]}`. Its exit status is 0 either way; anything else is a failure of the process itself
(meshbatch.runtime.validation says so). The serving process thus never imports pydantic, the models or PyYAML.
"""

from __future__ import annotations

import json
import sys


def report(path: str) -> bytes:
    """The answer for the config file at `path`."""
    from meshbatch.config.load import ConfigError, load
    from meshbatch.config.notes import notes
    from meshbatch.runtime import checks  # noqa: F401  (every check of meaning, registered)

    try:
        config = load(path, log_notes=False)
    except ConfigError as exc:
        problems = [{"path": p.path, "message": p.message} for p in exc.problems]
        return json.dumps({"ok": False, "problems": problems}).encode()
    head = json.dumps({"ok": True, "notes": notes(config)})
    # the config's JSON as pydantic writes it, spliced in (not parsed again to be written again)
    return head[:-1].encode() + b', "config": ' + config.model_dump_json(by_alias=True).encode() + b"}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m meshbatch.runtime.validate_child FILE", file=sys.stderr)
        return 2
    answer = report(argv[0])
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
