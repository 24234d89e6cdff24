"""`meshbatch ca`: init (a root CA for a trust domain), issue (a workload certificate), show (what a PEM file is)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson


def _init(args: argparse.Namespace) -> int:
    from meshbatch.core.spiffe import InvalidSpiffeId
    from meshbatch.security.ca import CaError, describe, init_ca, parse_duration

    try:
        cert, key = init_ca(Path(args.dir), args.trust_domain, parse_duration(args.ttl), force=args.force)
    except (CaError, InvalidSpiffeId, ValueError) as exc:
        print(f"meshbatch ca init: {exc}", file=sys.stderr)
        return 1
    info = describe(cert.read_bytes())
    print(f"{cert}: root CA for spiffe://{args.trust_domain}, valid until {info.not_after.isoformat()}")
    print(f"{key}: its private key (mode 0600); keep it off the workloads' machines")
    return 0


def _issue(args: argparse.Namespace) -> int:
    from meshbatch.core.spiffe import InvalidSpiffeId, SpiffeId
    from meshbatch.security.ca import CaError, issue, parse_duration

    out = Path(args.out)
    try:
        spiffe = SpiffeId.parse(args.spiffe_id)
        name = args.name or (spiffe.service_account or spiffe.path.rsplit("/", 1)[-1] or "workload")
        cert_path = Path(args.cert) if args.cert else out / f"{name}.crt"
        key_path = Path(args.key) if args.key else out / f"{name}.key"
        info = issue(Path(args.ca_dir), args.spiffe_id, cert_path, key_path, ttl=parse_duration(args.ttl),
                     backdate=parse_duration(args.backdate), dns_names=tuple(args.dns or ()))
    except (CaError, InvalidSpiffeId, ValueError, OSError) as exc:
        print(f"meshbatch ca issue: {exc}", file=sys.stderr)
        return 1
    print(f"{cert_path}: {info.spiffe_ids[0]} valid {info.not_before.isoformat()} to {info.not_after.isoformat()}")
    print(f"{key_path}: its private key (mode 0600)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from meshbatch.security.ca import describe

    try:
        info = describe(Path(args.file).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"meshbatch ca show: {args.file}: {exc}", file=sys.stderr)
        return 1
    problem = info.svid_problem()
    sys.stdout.write(orjson.dumps({**info.summary(), "svid": problem is None},
                                  option=orjson.OPT_INDENT_2).decode() + "\n")
    if problem is not None:  # shown, but refused: the proxy would not load it nor accept it from a peer
        print(f"meshbatch ca show: {args.file}: not an X509-SVID: {problem}", file=sys.stderr)
        return 1
    return 0


def add_ca(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = sub.add_parser("ca", help="the mesh certificate authority: init, issue, show")
    verbs = ca.add_subparsers(dest="ca_command", required=True)

    init = verbs.add_parser("init", help="create a root CA (ca.crt, ca.key with mode 0600) for a trust domain")
    init.add_argument("--dir", default="meshbatch-ca", help="where to write ca.crt and ca.key (default meshbatch-ca)")
    init.add_argument("--trust-domain", default="cluster.local", help="the trust domain (default cluster.local)")
    init.add_argument("--ttl", default="3650d", help="validity of the root (default 3650d)")
    init.add_argument("--force", action="store_true", help="replace an existing CA (its certificates stop verifying)")
    init.set_defaults(func=_init)

    issue = verbs.add_parser("issue", help="issue a short-lived workload certificate for a SPIFFE ID")
    issue.add_argument("--spiffe-id", required=True, help="spiffe://TRUST_DOMAIN/ns/NS/sa/SA")
    issue.add_argument("--ca-dir", default="meshbatch-ca", help="the CA's directory (default meshbatch-ca)")
    issue.add_argument("--out", default=".", help="directory for NAME.crt and NAME.key (default .)")
    issue.add_argument("--name", default=None, help="file name stem (default: the service account)")
    issue.add_argument("--cert", default=None, help="certificate path (overrides --out/--name)")
    issue.add_argument("--key", default=None, help="key path (overrides --out/--name)")
    issue.add_argument("--ttl", default="24h", help="validity from its start (default 24h)")
    issue.add_argument("--backdate", default="1m", help="start this long ago, for clock skew (default 1m)")
    issue.add_argument("--dns", action="append", help="an extra DNS name (repeatable), for edge listeners")
    issue.set_defaults(func=_issue)

    show = verbs.add_parser("show", help="print a certificate's SPIFFE IDs, issuer and validity as JSON "
                                          "(exit 1 when it is not an X509-SVID: not exactly one URI SAN)")
    show.add_argument("file")
    show.set_defaults(func=_show)


__all__ = ["add_ca"]
