"""Command line: `python -m sahara_sidecar serve --model DIR ...` and `... health --port N`.

stdout carries exactly one line, when the model is loaded and the server listens:
    {"event": "listening", "host": "127.0.0.1", "port": 50051, "pid": 1234, "model": "/path"}
Everything else (logs, progress bars) goes to stderr. Exit codes: 0 after SIGTERM/SIGINT,
2 when the model cannot be served (missing directory, unsupported family, bad option).
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
    health = commands.add_parser("health", help="check a running sidecar; exit 0 if it is SERVING, else 1")
    health.add_argument("--host", default="127.0.0.1")
    health.add_argument("--port", type=int, required=True)
    health.add_argument("--service", default="", help='"" (the server) or sahara.v1.AblationService')
    health.add_argument("--timeout", type=float, default=5.0, help="seconds")
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import torch

    from . import loading
    from .protos import health_pb2
    from .server import build_server

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.max_batch_rows < 0:
        print("error: --max-batch-rows must be 0 (from the memory budget) or more", file=sys.stderr)
        return 2
    if not math.isfinite(args.memory_budget_gib) or args.memory_budget_gib < 0:
        print("error: --memory-budget-gib must be a finite number >= 0 (0: auto)", file=sys.stderr)
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is reserved for the one JSON line
            lm = loading.load(args.model, device=args.device, dtype=args.dtype)
    except loading.LoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    server, port, health = build_server(lm, args.host, args.port, args.max_batch_rows, args.memory_budget_gib)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        logging.getLogger("sahara_sidecar").info("signal %d: stopping (grace %.0fs)", signum, GRACE_SECONDS)
        health.status = health_pb2.HealthCheckResponse.NOT_SERVING
        server.stop(GRACE_SECONDS)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    line = {"event": "listening", "host": args.host, "port": port, "pid": os.getpid(), "model": lm.name}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    logging.getLogger("sahara_sidecar").info(
        "serving %s (%s, %s) on %s:%d", lm.name, lm.device, str(lm.dtype).removeprefix("torch."), args.host, port
    )
    while not stopping.is_set():
        server.wait_for_termination(timeout=0.5)
    server.wait_for_termination()
    return 0


def check_health(args: argparse.Namespace) -> int:
    """For container health checks; imports grpc and the stubs only, not torch."""
    import grpc

    from .protos import health_pb2, health_pb2_grpc

    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    with grpc.insecure_channel(address) as channel:
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
