"""Who may call the sidecar, and what a call may carry: TLS, a bearer token, request limits.

- TLS: a server certificate and key (PEM files), and optionally a client CA, which makes every
  client present a certificate signed by it (mutual TLS). grpc.ssl_server_credentials.
- Token: read from the file named by --token-file (or SAHARA_TOKEN_FILE), else from the
  SAHARA_TOKEN environment variable; never from the command line, where `ps` shows it to every
  user. Every call except grpc.health.v1 must carry `authorization: Bearer <token>` metadata;
  the check compares SHA-256 digests with hmac.compare_digest (constant time, length hidden).
  Health is exempt so that Docker and Kubernetes probes work without the secret; it tells an
  unauthenticated caller only whether the server is up.
- Listening: on anything but a loopback address (127.0.0.0/8, ::1, localhost) the sidecar needs
  both TLS and a token of at least 16 characters, unless --insecure says the network is trusted.
- Request gate (RequestGate, a server interceptor): the token; then a request over the size limit
  becomes RESOURCE_EXHAUSTED and bytes that are not a valid message INVALID_ARGUMENT, both with
  a message saying what to change, before the servicer sees anything.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("sahara_sidecar")

TOKEN_ENV = "SAHARA_TOKEN"
TOKEN_FILE_ENV = "SAHARA_TOKEN_FILE"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
MIN_TOKEN_CHARS = 16
MIB = 1 << 20


class SecurityError(ValueError):
    """A security setting that cannot be used; the message says what to change."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; not 0.0.0.0 / :: (every interface)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SecurityError(f"{what} {path}: cannot read it ({err.strerror or err})") from err
    if b"-----BEGIN" not in data:
        raise SecurityError(f"{what} {path}: not a PEM file (no -----BEGIN line)")
    return data


def load_token(token_file: str | None, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """(token or None, where it came from): --token-file / SAHARA_TOKEN_FILE, else SAHARA_TOKEN."""
    env = os.environ if env is None else env
    path = token_file or env.get(TOKEN_FILE_ENV) or None
    if path:
        source = f"--token-file {path}" if token_file else f"{TOKEN_FILE_ENV}={path}"
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise SecurityError(f"{source}: cannot read the token ({err})") from err
        if not token:
            raise SecurityError(f"{source}: the token file is empty")
    elif TOKEN_ENV in env:
        source, token = TOKEN_ENV, env[TOKEN_ENV].strip()
        if not token:
            raise SecurityError(f"{TOKEN_ENV} is set but empty; set a token or unset it")
    else:
        return None, ""
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise SecurityError(f"{source}: the token must be one line of printable characters without spaces")
    if len(token) < MIN_TOKEN_CHARS:
        log.warning("the token from %s has %d characters; use at least %d", source, len(token), MIN_TOKEN_CHARS)
    return token, source


@dataclass(frozen=True)
class Security:
    """What serve() was given: TLS material (PEM bytes) and a token, each optional."""

    cert: bytes | None = None
    key: bytes | None = None
    client_ca: bytes | None = None
    token: str | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.cert is not None and self.key is not None
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.client_ca is not None
        )


def configure(
    host: str,
    *,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    token_file: str | None,
    insecure: bool,
    env: Mapping[str, str] | None = None,
) -> Security:
    """Read and check the serve options; SecurityError says what is missing or wrong."""
    if bool(tls_cert) != bool(tls_key):
        raise SecurityError("TLS needs both --tls-cert and --tls-key (PEM files)")
    if tls_client_ca and not tls_cert:
        raise SecurityError("--tls-client-ca (mutual TLS) needs TLS: give --tls-cert and --tls-key too")
    security = Security(
        cert=read_pem(tls_cert, "--tls-cert") if tls_cert else None,
        key=read_pem(tls_key, "--tls-key") if tls_key else None,
        client_ca=read_pem(tls_client_ca, "--tls-client-ca") if tls_client_ca else None,
        token=load_token(token_file, env)[0],
    )
    if not is_loopback(host) and not insecure:
        missing = []
        if not security.tls:
            missing.append("TLS (--tls-cert and --tls-key)")
        if security.token is None:
            missing.append(f"a token ({TOKEN_ENV}, {TOKEN_FILE_ENV} or --token-file)")
        if security.token is not None and len(security.token) < MIN_TOKEN_CHARS:
            raise SecurityError(
                f"the token has {len(security.token)} characters; off loopback use at least {MIN_TOKEN_CHARS} "
                "(e.g. `openssl rand -hex 32`)"
            )
        if missing:
            raise SecurityError(
                f"refusing to listen on {host}, which is not a loopback address, without "
                f"{' and '.join(missing)}; add {'them' if len(missing) > 1 else 'it'}, listen on 127.0.0.1, "
                "or pass --insecure if the network is trusted"
            )
    return security


# --- the request gate ---------------------------------------------------------------------


class _Refusal:
    """Stands in for a request that must not reach the servicer."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message


def bearer_problem(metadata: Sequence[Any] | None, digest: bytes) -> str | None:
    """None when the metadata carries the token whose SHA-256 is `digest`, else what is wrong."""
    values = [m.value for m in metadata or () if m.key == "authorization"]
    if not values:
        return (
            "missing bearer token: this sidecar requires `authorization: Bearer <token>` metadata "
            f"(the CLI sends the token from {TOKEN_ENV} or --token-file)"
        )
    value = values[0].decode("utf-8", "replace") if isinstance(values[0], bytes) else str(values[0])
    scheme, _, given = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "malformed authorization metadata: expected `Bearer <token>`"
    if not hmac.compare_digest(hashlib.sha256(given.strip().encode("utf-8")).digest(), digest):
        return f"invalid bearer token: it does not match this sidecar's token (check {TOKEN_ENV} or --token-file)"
    return None


class RequestGate(grpc.ServerInterceptor):
    """Token (when set), size limit and well-formedness of every unary request except health's."""

    def __init__(self, token: str | None, max_request_bytes: int) -> None:
        self._digest = hashlib.sha256(token.encode("utf-8")).digest() if token else None
        self.max_request_bytes = max_request_bytes

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.request_streaming or details.method.startswith(HEALTH_PREFIX):
            return handler
        denied = None if self._digest is None else bearer_problem(details.invocation_metadata, self._digest)
        return self._gated(handler, details.method, denied)

    def _gated(self, handler: grpc.RpcMethodHandler, method: str, denied: str | None) -> grpc.RpcMethodHandler:
        name = method.rsplit("/", 1)[-1]
        limit = self.max_request_bytes
        deserialize = handler.request_deserializer

        def read(raw: bytes) -> object:
            if denied is not None:
                return _Refusal(grpc.StatusCode.UNAUTHENTICATED, denied)  # never parse an unauthenticated request
            if len(raw) > limit:
                return _Refusal(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the {name} request is {len(raw):,} bytes, over this sidecar's limit of {limit:,} "
                    f"(--max-request-mib {limit / MIB:g}); send fewer prompts or specs per request, "
                    "or start the sidecar with a larger --max-request-mib",
                )
            try:
                return deserialize(raw) if deserialize is not None else raw
            except Exception as err:
                return _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the {name} request is not a valid message ({type(err).__name__}: {err})",
                )

        def refuse(request: _Refusal, context: grpc.ServicerContext) -> None:
            if request.code == grpc.StatusCode.UNAUTHENTICATED:
                log.warning("UNAUTHENTICATED %s from %s: %s", method, context.peer(), request.message.split(":")[0])
            context.abort(request.code, request.message)

        if handler.response_streaming:
            stream = handler.unary_stream

            def streaming(request: object, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Refusal):
                    refuse(request, context)
                yield from stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                streaming, request_deserializer=read, response_serializer=handler.response_serializer
            )
        unary = handler.unary_unary

        def single(request: object, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Refusal):
                refuse(request, context)
            return unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            single, request_deserializer=read, response_serializer=handler.response_serializer
        )


def core_receive_limit(max_request_bytes: int) -> int:
    """gRPC's own ceiling, above the gate's limit so that the gate, with its clearer message, answers first."""
    return min(2**31 - 1, 2 * max_request_bytes + MIB)
