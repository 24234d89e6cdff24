"""The `meshbatch` command line: run, check, demo, example-upstream, bench, chaos, top, tune, ca, k8s."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from meshbatch import __version__, extras

if TYPE_CHECKING:
    from meshbatch.config.model import Config

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _cmd_check(args: argparse.Namespace) -> int:
    from meshbatch.config import ConfigError, load
    from meshbatch.runtime import checks  # noqa: F401  (every check of meaning, registered)

    if args.json:
        return _check_json(args.file)
    try:
        config = load(args.file, log_notes=False)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    from meshbatch.security.admin import exposure_warnings

    admin = config.admin
    for warning in exposure_warnings(admin.listen if admin else None, admin.token if admin else None):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    from meshbatch.config.notes import notes

    for note in notes(config):
        print(f"{args.file}: note: {note}", file=sys.stderr)
    n = _summary(config)
    print(f"{args.file}: ok: {n['listeners']} listener(s), {n['routes']} route(s) ({n['batching']} batching), "
          f"{n['clusters']} cluster(s), {n['endpoints']} endpoint(s)")
    return 0


def _summary(config: Config) -> dict[str, int]:
    listeners = config.listeners
    return {
        "listeners": len(listeners),
        "routes": sum(len(lst.routes) for lst in listeners),
        "batching": sum(1 for lst in listeners for r in lst.routes if r.kind == "batch"),
        "clusters": len(config.clusters),
        "endpoints": sum(len(c.endpoints) for c in config.clusters),
    }


def _check_json(file: str) -> int:
    """`check --json`: one JSON object on stdout, `ok`, `summary` (null on errors), `errors`, `notes`; the exit
    status is the same as without `--json` (0 valid, 1 errors)."""
    import json

    from meshbatch.config import ConfigError, load
    from meshbatch.config.notes import notes
    from meshbatch.config.redact import redact_text
    from meshbatch.security.admin import exposure_warnings

    report: dict[str, object] = {"file": file, "ok": True, "summary": None, "errors": [], "notes": []}
    try:
        config = load(file, log_notes=False)
    except ConfigError as exc:
        report["ok"] = False
        report["errors"] = [{"path": p.path, "message": redact_text(p.message)} for p in exc.problems]
    else:
        admin = config.admin
        report["summary"] = _summary(config)
        report["notes"] = [*exposure_warnings(admin.listen if admin else None, admin.token if admin else None),
                           *notes(config)]
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def _cmd_run(args: argparse.Namespace) -> int:
    import uvloop

    from meshbatch.config import ConfigError
    from meshbatch.runtime.app import serve
    from meshbatch.telemetry.build import pure_build_warning

    warning = pure_build_warning()
    if warning is not None:
        logging.getLogger("meshbatch").warning(warning)

    try:
        if args.worker is not None:  # one worker of `run --workers N`, started by its supervisor
            from meshbatch.runtime.workers.role import WorkerRole
            from meshbatch.runtime.workers.worker import serve_worker

            code: int = uvloop.run(serve_worker(args.config, WorkerRole.decode(args.worker)))
        else:
            from meshbatch.runtime.validation import validate

            count = _workers_option(args)
            config = validate(args.config)  # in a child process: this one never imports the models
            if count is None:
                count = _workers_of(args.config, config.workers)
            if count > 1:
                from meshbatch.runtime.workers.supervisor import supervise

                code = uvloop.run(supervise(args.config, count, args.log_level, config))
            else:
                code = uvloop.run(serve(args.config, config))
    except ValueError as exc:  # --workers (or the config's workers:) out of bounds
        print(f"meshbatch run: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except OSError as exc:
        from meshbatch.config.redact import redact_text

        print(f"meshbatch: cannot start: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # a worker of `run --workers N` exited before it was ready
        print(f"meshbatch: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.print_modules:  # what the process imported in its life: the config's parts and nothing else
            print("meshbatch: modules " + " ".join(sorted(sys.modules)), file=sys.stderr)
    return code


def _workers_option(args: argparse.Namespace) -> int | None:
    """The worker count `--workers` gives (None: not given)."""
    from meshbatch.runtime.workers.count import workers_count

    if args.workers is None:
        return None
    try:
        return workers_count(args.workers)
    except ValueError as exc:
        raise ValueError(f"--workers {exc}") from None


def _workers_of(path: str, workers: int | str) -> int:
    """The worker count the config's `workers:` gives."""
    from meshbatch.runtime.workers.count import workers_count

    try:
        return workers_count(workers)
    except ValueError as exc:
        raise ValueError(f"{path}: workers: {exc}") from None


def _cmd_demo(args: argparse.Namespace) -> int:
    extras.require("demo", "meshbatch demo")
    if args.database and args.database.startswith(("postgres://", "postgresql://")):
        extras.require("postgres", "meshbatch demo --database postgresql://...")
    if args.grpc:
        extras.require("grpc", "meshbatch demo --grpc")
    from meshbatch.demo.cli import run_demo

    return run_demo(args)


def _cmd_example_upstream(args: argparse.Namespace) -> int:
    from meshbatch.demo.upstream import run

    return run(args)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: HOST:PORT, e.g. 127.0.0.1:9000")
    return host.strip("[]"), int(port)


def _add_example_upstream(sub: Any) -> None:
    upstream = sub.add_parser("example-upstream", help="a small batch-serving service for the quick start",
                              description="Serves POST /orders/batch with the consumer SDK: one result per item, "
                                          "after --delay-ms; GET /stats counts calls and items.")
    upstream.add_argument("--listen", type=_listen, default=("127.0.0.1", 9000), metavar="HOST:PORT",
                          help="where to listen (default 127.0.0.1:9000)")
    upstream.add_argument("--delay-ms", type=float, default=5.0, help="what each call costs (default 5)")
    upstream.add_argument("--codec", default="json-array", choices=["json-array", "ndjson", "envelope"])
    upstream.add_argument("--path", default="/orders/batch", help="the batch path (default /orders/batch)")
    upstream.set_defaults(func=_cmd_example_upstream)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshbatch", description="A service-mesh data plane with microbatching.")
    from meshbatch.telemetry.build import installed_build

    parser.add_argument("--version", action="version", version=f"meshbatch {__version__} ({installed_build()})",
                        help="print the version and the build (compiled, or pure Python) and exit")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the proxy from a YAML config (SIGTERM drains, SIGHUP reloads)",
                         description="Run the proxy. The ready line on stderr names the process id (pid=N) to "
                                     "send SIGHUP (reload) or SIGTERM (drain) to.")
    _add_config_file(run)
    run.add_argument("--workers", default=None, metavar="N",
                     help="worker processes sharing the listeners' ports (SO_REUSEPORT), under one supervisor "
                          "serving the admin API: a number or 'auto' (one per core); default: the config's "
                          "`workers:`, else 1 (see docs/operations.md)")
    run.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # set by the supervisor for each worker
    run.add_argument("--print-modules", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a config: every error with its path")
    _add_config_file(check)
    check.add_argument("--json", action="store_true",
                       help="print one JSON object: ok, the summary counts, errors [{path, message}], notes")
    check.set_defaults(func=_cmd_check)

    demo = sub.add_parser("demo", help="run the example mesh: producer, batching proxy, consumer, database")
    demo.add_argument("--duration", type=float, default=8.0, help="seconds of load per run (default 8)")
    demo.add_argument("--serve", action="store_true", help="keep the mesh running for curl after the runs")
    demo.add_argument("--database", default=None, help="database URL (default: a SQLite file)")
    demo.add_argument("--port", type=int, default=8080, help="the proxy's port (default 8080)")
    demo.add_argument("--concurrency", type=int, default=64, help="producer connections (default 64)")
    demo.add_argument("--plot", default=None,
                      help="where to write the PNG plot of the two runs (default: meshbatch-demo.png in the current "
                           "directory, or in the work directory with --keep)")
    demo.add_argument("--grpc", action="store_true",
                      help="the gRPC variant: a grpcio producer, gRPC batching, the consumers served by serve_grpc")
    demo.add_argument("--keep", action="store_true",
                      help="keep the run's work directory (database, logs, config, plot) and print where it is")
    demo.set_defaults(func=_cmd_demo)

    _add_example_upstream(sub)

    from meshbatch.tools.commands import add_shards, add_top, add_tune

    add_top(sub)
    add_tune(sub)
    add_shards(sub)

    from meshbatch.tools.ingest_cli import add_ingest

    add_ingest(sub)

    from meshbatch.security.cacli import add_ca

    add_ca(sub)

    from meshbatch.k8s.cli import add_k8s

    add_k8s(sub)

    bench = sub.add_parser("bench", help="benchmarks against peers (proxy, batching, ingest)", add_help=False)
    bench.set_defaults(func=None)
    chaos = sub.add_parser("chaos", help="the chaos and soak suite: faults under load, with figures", add_help=False)
    chaos.set_defaults(func=None)

    from meshbatch.cli_completion import add_completion

    add_completion(sub, build_parser)
    for name, command in sub.choices.items():  # `--log-level` after the subcommand too
        if name not in ("bench", "chaos"):  # these two forward their words to their own parsers
            _add_log_level(command)
    return parser


def _add_log_level(command: argparse.ArgumentParser) -> None:
    """`--log-level` on `command` and its subcommands; absent there, the one before the subcommand counts."""
    command.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                         help="as before the subcommand (default info)")
    for action in command._actions:  # argparse has no public walk over subcommands
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_log_level(nested)


def _add_config_file(command: argparse.ArgumentParser) -> None:
    """`FILE` or `--config FILE` / `-c FILE`, both accepted by `run` and `check`."""
    command.add_argument("file", nargs="?", default=None, metavar="FILE", help="the YAML config file")
    command.add_argument("--config", "-c", default=None, metavar="FILE", help="the YAML config file (same as FILE)")


def _resolve_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One config file from `FILE` and `--config`: either, or both when they are the same path."""
    if args.command not in ("run", "check"):
        return
    if args.file is not None and args.config is not None and args.file != args.config:
        parser.error(f"{args.command}: two different config files given: {args.file!r} and --config "
                     f"{args.config!r}; give one")
    path = args.file if args.file is not None else args.config
    if path is None:
        parser.error(f"{args.command}: a config file is required: meshbatch {args.command} FILE "
                     f"(or --config FILE)")
    args.file = args.config = path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `bench` and `chaos` forward everything after them to their harness's own parser, loaded from the checkout.
    for i, word in enumerate(argv):
        if word in ("bench", "chaos"):
            logging.basicConfig(level=logging.WARNING)
            from meshbatch import checkout

            return checkout.run(word, argv[i + 1:])
        if not word.startswith("-"):
            break
    args = parser.parse_args(argv)
    _resolve_config_file(parser, args)
    from meshbatch.config.redact import LOG_FORMAT, redact_logs

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format=LOG_FORMAT)

    redact_logs()  # no log line carries a password, token or credential (meshbatch.config.redact)
    logging.getLogger("meshbatch.cli").debug("meshbatch %s %s, pid %d", __version__, args.command, os.getpid())
    try:
        code: int = args.func(args)
    except extras.MissingExtraError as exc:  # an optional part used without its extra: what to install
        print(f"meshbatch: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
