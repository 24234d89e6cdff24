"""The `meshbatch` command line: run, check, demo, bench, chaos, top, tune, ca, k8s."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from meshbatch import __version__, extras


def _cmd_check(args: argparse.Namespace) -> int:
    from meshbatch.config import ConfigError, load
    from meshbatch.runtime import checks  # noqa: F401  (every check of meaning, registered)

    try:
        config = load(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    from meshbatch.security.admin import exposure_warnings

    admin = config.admin
    for warning in exposure_warnings(admin.listen if admin else None, admin.token if admin else None):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    routes = sum(len(lst.routes) for lst in config.listeners)
    batched = sum(1 for lst in config.listeners for r in lst.routes if r.kind == "batch")
    endpoints = sum(len(c.endpoints) for c in config.clusters)
    print(f"{args.file}: ok: {len(config.listeners)} listener(s), {routes} route(s) ({batched} batching), "
          f"{len(config.clusters)} cluster(s), {endpoints} endpoint(s)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import uvloop

    from meshbatch.config import ConfigError
    from meshbatch.runtime.app import serve

    try:
        code: int = uvloop.run(serve(args.config))
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except OSError as exc:
        from meshbatch.config.redact import redact_text

        print(f"meshbatch: cannot start: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if args.print_modules:  # what the process imported in its life: the config's parts and nothing else
            print("meshbatch: modules " + " ".join(sorted(sys.modules)), file=sys.stderr)
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    extras.require("demo", "meshbatch demo")
    if args.database and args.database.startswith(("postgres://", "postgresql://")):
        extras.require("postgres", "meshbatch demo --database postgresql://...")
    from meshbatch.demo.cli import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshbatch", description="A service-mesh data plane with microbatching.")
    parser.add_argument("--version", action="version", version=f"meshbatch {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the proxy from a YAML config (SIGTERM drains, SIGHUP reloads)")
    run.add_argument("--config", "-c", required=True, help="the YAML config file")
    run.add_argument("--print-modules", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a config: every error with its path")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check)

    demo = sub.add_parser("demo", help="run the example mesh: producer, batching proxy, consumer, database")
    demo.add_argument("--duration", type=float, default=8.0, help="seconds of load per run (default 8)")
    demo.add_argument("--serve", action="store_true", help="keep the mesh running for curl after the runs")
    demo.add_argument("--database", default=None, help="database URL (default: a SQLite file)")
    demo.add_argument("--port", type=int, default=8080, help="the proxy's port (default 8080)")
    demo.add_argument("--concurrency", type=int, default=64, help="producer connections (default 64)")
    demo.add_argument("--plot", default=None,
                      help="where to write the PNG plot of the two runs (default: in the run's work directory)")
    demo.set_defaults(func=_cmd_demo)

    from meshbatch.tools.commands import add_top, add_tune

    add_top(sub)
    add_tune(sub)

    from meshbatch.security.cacli import add_ca

    add_ca(sub)

    from meshbatch.k8s.cli import add_k8s

    add_k8s(sub)

    bench = sub.add_parser("bench", help="benchmarks against peers (proxy, batching, ingest)", add_help=False)
    bench.set_defaults(func=None)
    chaos = sub.add_parser("chaos", help="the chaos and soak suite: faults under load, with figures", add_help=False)
    chaos.set_defaults(func=None)
    return parser


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
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from meshbatch.config.redact import redact_logs

    redact_logs()  # no log line carries a password, token or credential (meshbatch.config.redact)
    try:
        code: int = args.func(args)
    except extras.MissingExtraError as exc:  # an optional part used without its extra: what to install
        print(f"meshbatch: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
