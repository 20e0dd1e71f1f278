"""Command line: `python -m sahara_sidecar serve --model DIR ...` and `... health --port N`.

stdout carries exactly one line, when the model is loaded and the server listens:
    {"event": "listening", "host": "127.0.0.1", "port": 50051, "pid": 1234, "model": "/path",
     "tls": false, "token": false}
Everything else (logs, progress bars) goes to stderr. Exit codes: 0 after SIGTERM/SIGINT,
2 when the model cannot be served (missing directory, unsupported family, bad option, a
non-loopback address without TLS and a token; see security.py).

Secrets never go on the command line: the token comes from SAHARA_TOKEN or a file
(--token-file / SAHARA_TOKEN_FILE). TLS file paths may come from SAHARA_TLS_* variables, so a
container's HEALTHCHECK and its server see the same settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
from typing import Any

GRACE_SECONDS = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sahara_sidecar", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="load a model and serve AblationService + Health over gRPC")
    serve.add_argument("--model", required=True, help="local model directory (or a hub id already in the HF cache)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (reported on stdout)")
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    serve.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto")
    serve.add_argument(
        "--max-batch-rows", type=int, default=0, help="cap on rows per forward (0: sized from the memory budget)"
    )
    serve.add_argument(
        "--memory-budget-gib",
        type=float,
        default=0.0,
        help="activation memory per forward when a request gives none (0: auto, 70%% of free GPU memory or 2 GiB)",
    )
    serve.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    serve.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one exits (the CLI's own sidecars)",
    )
    serve.add_argument(
        "--malloc",
        choices=("reuse", "default"),
        default="reuse",
        help="reuse: glibc keeps freed memory for the next batch instead of new zeroed pages (allocator.py); "
        "default: glibc's own settings",
    )
    env = os.environ.get
    secure = serve.add_argument_group("security (required together on a non-loopback --host, unless --insecure)")
    secure.add_argument("--tls-cert", default=env("SAHARA_TLS_CERT"), help="server certificate, PEM [SAHARA_TLS_CERT]")
    secure.add_argument("--tls-key", default=env("SAHARA_TLS_KEY"), help="its private key, PEM [SAHARA_TLS_KEY]")
    secure.add_argument(
        "--tls-client-ca",
        default=env("SAHARA_TLS_CLIENT_CA"),
        help="CA bundle, PEM: clients must present a certificate it signed (mutual TLS) [SAHARA_TLS_CLIENT_CA]",
    )
    secure.add_argument(
        "--token-file",
        default=None,
        help="file holding the bearer token every call but health must carry "
        "[SAHARA_TOKEN_FILE; else the token itself in SAHARA_TOKEN]",
    )
    secure.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback --host without TLS or a token (trusted networks)"
    )
    limits = serve.add_argument_group("limits per request")
    limits.add_argument("--max-request-mib", type=float, default=16.0, help="request message size (default 16)")
    limits.add_argument("--max-prompts", type=int, default=4096, help="prompts per request (default 4096)")
    limits.add_argument("--max-specs", type=int, default=16384, help="ablation specs per Forward (default 16384)")
    limits.add_argument("--max-new-tokens", type=int, default=2048, help="Generate's max_new_tokens (default 2048)")
    health = commands.add_parser("health", help="check a running sidecar; exit 0 if it is SERVING, else 1")
    health.add_argument("--host", default="127.0.0.1")
    health.add_argument("--port", type=int, required=True)
    health.add_argument("--service", default="", help='"" (the server) or sahara.v1.AblationService')
    health.add_argument("--timeout", type=float, default=5.0, help="seconds")
    health.add_argument(
        "--tls-ca", default=env("SAHARA_TLS_CA"), help="connect with TLS, trusting this CA bundle, PEM [SAHARA_TLS_CA]"
    )
    health.add_argument(
        "--tls-server-name",
        default=env("SAHARA_TLS_SERVER_NAME"),
        help="the name the server certificate must carry, when not --host (e.g. the Service's DNS name) "
        "[SAHARA_TLS_SERVER_NAME]",
    )
    health.add_argument(
        "--tls-client-cert",
        default=env("SAHARA_TLS_CLIENT_CERT"),
        help="client certificate, PEM, for a sidecar that requires one (mutual TLS) [SAHARA_TLS_CLIENT_CERT]",
    )
    health.add_argument(
        "--tls-client-key", default=env("SAHARA_TLS_CLIENT_KEY"), help="its private key, PEM [SAHARA_TLS_CLIENT_KEY]"
    )
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    # A sidecar the CLI started for one command stops when that process is gone, however it ended
    # (SIGKILL included: it cannot stop its children then), instead of holding the device's memory.
    parent = os.getppid() if args.exit_with_parent else None
    if args.malloc == "reuse":  # before torch and the model allocate anything
        from .allocator import keep_freed_memory

        keep_freed_memory()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import torch

    from . import loading
    from .memory import MAX_BUDGET_GIB, budget_in_range
    from .protos import health_pb2
    from .security import MIB, SecurityError, configure
    from .server import Limits, build_server

    try:  # before the model loads: a wrong setting fails in a second, not after minutes
        security = configure(
            args.host,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            token_file=args.token_file,
            insecure=args.insecure,
        )
    except SecurityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name in ("max_prompts", "max_specs", "max_new_tokens"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if not (math.isfinite(args.max_request_mib) and 0 < args.max_request_mib <= 1024):
        print("error: --max-request-mib must be more than 0 and at most 1024", file=sys.stderr)
        return 2
    limits = Limits(
        max_request_bytes=int(args.max_request_mib * MIB),
        max_prompts=args.max_prompts,
        max_specs=args.max_specs,
        max_new_tokens=args.max_new_tokens,
    )

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.max_batch_rows < 0:
        print("error: --max-batch-rows must be 0 (from the memory budget) or more", file=sys.stderr)
        return 2
    if not budget_in_range(args.memory_budget_gib):
        print(f"error: --memory-budget-gib must be a number from 0 (auto) to {MAX_BUDGET_GIB:g}", file=sys.stderr)
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is reserved for the one JSON line
            lm = loading.load(args.model, device=args.device, dtype=args.dtype)
    except loading.LoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    try:
        server, port, health = build_server(
            lm, args.host, args.port, args.max_batch_rows, args.memory_budget_gib, limits=limits, security=security
        )
    except (OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def stop(reason: str) -> None:
        if stopping.is_set():
            return
        stopping.set()
        logging.getLogger("sahara_sidecar").info("%s: stopping (grace %.0fs)", reason, GRACE_SECONDS)
        health.status = health_pb2.HealthCheckResponse.NOT_SERVING
        server.stop(GRACE_SECONDS)

    signal.signal(signal.SIGTERM, lambda signum, _frame: stop(f"signal {signum}"))
    signal.signal(signal.SIGINT, lambda signum, _frame: stop(f"signal {signum}"))
    line = {
        "event": "listening",
        "host": args.host,
        "port": port,
        "pid": os.getpid(),
        "model": lm.name,
        "tls": security.tls,
        "token": security.token is not None,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    logging.getLogger("sahara_sidecar").info(
        "serving %s (%s, %s) on %s:%d (%s, %s)",
        lm.name,
        lm.device,
        str(lm.dtype).removeprefix("torch."),
        args.host,
        port,
        ("mutual TLS" if security.client_ca else "TLS") if security.tls else "plaintext",
        "token required" if security.token else "no token",
    )
    while not stopping.is_set():
        server.wait_for_termination(timeout=0.5)
        if parent is not None and os.getppid() != parent:
            stop(f"parent process {parent} is gone")
    server.wait_for_termination()
    return 0


def check_health(args: argparse.Namespace) -> int:
    """For container health checks; imports grpc and the stubs only, not torch."""
    import grpc

    from .protos import health_pb2, health_pb2_grpc
    from .security import SecurityError

    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    try:
        channel = health_channel(args, address)
    except SecurityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as err:
            print(f"{address}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def health_channel(args: argparse.Namespace, address: str) -> Any:
    """Plaintext, or TLS (with a client certificate for mutual TLS) when --tls-ca is given."""
    import grpc

    from .security import SecurityError, read_pem

    if not args.tls_ca:
        if args.tls_client_cert or args.tls_client_key or args.tls_server_name:
            raise SecurityError("--tls-client-cert, --tls-client-key and --tls-server-name need --tls-ca")
        return grpc.insecure_channel(address)
    if bool(args.tls_client_cert) != bool(args.tls_client_key):
        raise SecurityError("a client certificate needs both --tls-client-cert and --tls-client-key")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_pem(args.tls_ca, "--tls-ca"),
        private_key=read_pem(args.tls_client_key, "--tls-client-key") if args.tls_client_key else None,
        certificate_chain=read_pem(args.tls_client_cert, "--tls-client-cert") if args.tls_client_cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(address, credentials, options=options)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "health":
        return check_health(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
