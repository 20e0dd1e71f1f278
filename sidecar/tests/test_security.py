"""Security of a remote sidecar: the token interceptor, TLS and mutual TLS with certificates made
here (openssl), health without a token (probes), and the refusal to listen on a non-loopback
address without TLS and a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import tiny_models
from certs import make_pki

from sahara_sidecar import loading
from sahara_sidecar.protos import health_pb2, health_pb2_grpc, sahara_pb2, sahara_pb2_grpc
from sahara_sidecar.security import (
    Security,
    SecurityError,
    configure,
    is_loopback,
    load_token,
)
from sahara_sidecar.server import build_server

SIDECAR = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-0123456789abcdef"
FORWARD = sahara_pb2.ForwardRequest(prompts=["Hi"], specs=[sahara_pb2.AblationSpec()], return_logprobs=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> loading.LoadedModel:
    path = tiny_models.save("llama", tmp_path_factory.mktemp("llama"))
    return loading.load(str(path), device="cpu", dtype="float32")


def serve(lm, security: Security):
    server, port, _health = build_server(lm, "127.0.0.1", 0, security=security)
    return server, port


def tls_security(pki, token: str | None = TOKEN, mutual: bool = False) -> Security:
    return Security(
        cert=pki["server_cert"].read_bytes(),
        key=pki["server_key"].read_bytes(),
        client_ca=pki["ca"].read_bytes() if mutual else None,
        token=token,
    )


def tls_channel(port: int, pki, ca: str = "ca", client: str | None = None, host: str = "localhost") -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki[ca].read_bytes(),
        private_key=pki[f"{client}_key"].read_bytes() if client else None,
        certificate_chain=pki[f"{client}_cert"].read_bytes() if client else None,
    )
    return grpc.secure_channel(f"{host}:{port}", credentials)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_load_token_sources(tmp_path):
    assert load_token(None, {}) == (None, "")
    assert load_token(None, {"SAHARA_TOKEN": f" {TOKEN}\n"}) == (TOKEN, "SAHARA_TOKEN")
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    assert load_token(str(file), {"SAHARA_TOKEN": "ignored-because-a-file-is-given"})[0] == TOKEN
    assert load_token(None, {"SAHARA_TOKEN_FILE": str(file)})[0] == TOKEN
    with pytest.raises(SecurityError, match="set but empty"):
        load_token(None, {"SAHARA_TOKEN": "  "})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecurityError, match="token file is empty"):
        load_token(str(tmp_path / "empty"), {})
    with pytest.raises(SecurityError, match="cannot read the token"):
        load_token(str(tmp_path / "missing"), {})
    with pytest.raises(SecurityError, match="one line"):
        load_token(None, {"SAHARA_TOKEN": "two words"})


def test_configure_refuses_non_loopback_without_tls_and_token(pki):
    options = {"tls_cert": None, "tls_key": None, "tls_client_ca": None, "token_file": None, "insecure": False}
    with pytest.raises(SecurityError) as both:
        configure("0.0.0.0", **options, env={})
    assert "TLS (--tls-cert and --tls-key) and a token" in str(both.value)
    assert "--insecure" in str(both.value)
    tls = {**options, "tls_cert": str(pki["server_cert"]), "tls_key": str(pki["server_key"])}
    with pytest.raises(SecurityError, match=r"without a token \(SAHARA_TOKEN"):
        configure("10.1.2.3", **tls, env={})
    with pytest.raises(SecurityError, match=r"without TLS \(--tls-cert and --tls-key\); add it"):
        configure("0.0.0.0", **options, env={"SAHARA_TOKEN": TOKEN})
    assert configure("0.0.0.0", **tls, env={"SAHARA_TOKEN": TOKEN}).tls
    with pytest.raises(SecurityError, match="the token has 10 characters; off loopback use at least 16"):
        configure("0.0.0.0", **tls, env={"SAHARA_TOKEN": "REPLACE_ME"})  # e.g. a placeholder left in a Secret
    assert configure("127.0.0.1", **options, env={"SAHARA_TOKEN": "short"}).token == "short"
    assert configure("0.0.0.0", **{**options, "insecure": True}, env={}).token is None
    assert configure("127.0.0.1", **options, env={}) == Security()
    with pytest.raises(SecurityError, match="both --tls-cert and --tls-key"):
        configure("127.0.0.1", **{**options, "tls_cert": str(pki["server_cert"])}, env={})
    with pytest.raises(SecurityError, match="not a PEM file"):
        configure("127.0.0.1", **{**tls, "tls_key": str(pki["server_cert"].parent / "server.ext")}, env={})


def test_serve_refuses_before_loading_the_model(tmp_path):
    """Exit 2 with the missing pieces named, in about a second: the model is never loaded."""
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAHARA_")}
    result = subprocess.run(
        [sys.executable, "-m", "sahara_sidecar", "serve", "--model", str(tmp_path / "nope"), "--host", "0.0.0.0"],
        cwd=SIDECAR,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "TLS (--tls-cert and --tls-key) and a token" in result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started < 30


# --- the token -----------------------------------------------------------------------------


def test_token_required_on_every_call_but_health(lm):
    server, port = serve(lm, Security(token=TOKEN))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            calls = {
                "Describe": lambda md: stub.Describe(sahara_pb2.DescribeRequest(), metadata=md, timeout=10),
                "Forward": lambda md: list(stub.Forward(FORWARD, metadata=md, timeout=30)),
                "Generate": lambda md: list(
                    stub.Generate(sahara_pb2.GenerateRequest(prompts=["Hi"], max_new_tokens=2), metadata=md, timeout=30)
                ),
                "Attribute": lambda md: list(
                    stub.Attribute(sahara_pb2.AttributeRequest(prompts=["Hi"], method=1), metadata=md, timeout=30)
                ),
                "MeasurePeak": lambda md: stub.MeasurePeak(
                    sahara_pb2.MeasurePeakRequest(size=16, min_seconds=0.01), metadata=md, timeout=30
                ),
            }
            for name, call in calls.items():
                code, details = code_of(lambda call=call: call(None))
                assert code == grpc.StatusCode.UNAUTHENTICATED, name
                assert "missing bearer token" in details and "SAHARA_TOKEN" in details
                code, details = code_of(lambda call=call: call(bearer("not-the-token")))
                assert (code, details.split(":")[0]) == (grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"), name
                code, details = code_of(lambda call=call: call([("authorization", TOKEN)]))
                assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer <token>" in details, name
                call(bearer(TOKEN))  # succeeds
            assert stub.Describe(sahara_pb2.DescribeRequest(), metadata=[("authorization", f"bearer {TOKEN}")]).model
            # a token that is a prefix of the real one, or longer, is wrong too
            for near in (TOKEN[:-1], TOKEN + "x"):
                code, _ = code_of(lambda near=near: calls["Describe"](bearer(near)))
                assert code == grpc.StatusCode.UNAUTHENTICATED
            # probes need no token
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "sahara.v1.AblationService"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert [r.status for r in health.Watch(health_pb2.HealthCheckRequest(), timeout=10)] == [
                health_pb2.HealthCheckResponse.SERVING
            ]
    finally:
        server.stop(None)


def test_unauthenticated_garbage_is_refused_before_parsing(lm):
    server, port = serve(lm, Security(token=TOKEN))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/sahara.v1.AblationService/Describe")  # identity serializers: bytes
            code, details = code_of(lambda: raw(b"\xff\xff\xff garbage", timeout=10))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in details
            code, _ = code_of(lambda: raw(b"\xff\xff\xff garbage", metadata=bearer(TOKEN), timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(None)


# --- TLS -----------------------------------------------------------------------------------


def test_tls_with_token(lm, pki):
    server, port = serve(lm, tls_security(pki))
    try:
        with tls_channel(port, pki) as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            assert stub.Describe(sahara_pb2.DescribeRequest(), metadata=bearer(TOKEN), timeout=10).family == "llama"
            assert list(stub.Forward(FORWARD, metadata=bearer(TOKEN), timeout=30))[-1].HasField("stats")
            code, _ = code_of(lambda: stub.Describe(sahara_pb2.DescribeRequest(), timeout=10))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        with tls_channel(port, pki, host="127.0.0.1") as channel:  # the certificate names the IP too
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # plaintext to a TLS port: a clean failure within the deadline, no hang
        started = time.monotonic()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            code, _ = code_of(lambda: stub.Describe(sahara_pb2.DescribeRequest(), metadata=bearer(TOKEN), timeout=5))
            assert code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 5.5
        # a server certificate from a CA the client does not trust
        with tls_channel(port, pki, ca="other_ca") as channel:
            code, _ = code_of(
                lambda: sahara_pb2_grpc.AblationServiceStub(channel).Describe(
                    sahara_pb2.DescribeRequest(), metadata=bearer(TOKEN), timeout=5
                )
            )
            assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_mutual_tls(lm, pki):
    server, port = serve(lm, tls_security(pki, mutual=True))
    try:
        describe = sahara_pb2.DescribeRequest()
        with tls_channel(port, pki, client="client") as channel:
            assert sahara_pb2_grpc.AblationServiceStub(channel).Describe(describe, metadata=bearer(TOKEN), timeout=10)
        for client in (None, "rogue"):  # no client certificate; one signed by another CA
            with tls_channel(port, pki, client=client) as channel:
                stub = sahara_pb2_grpc.AblationServiceStub(channel)
                code, _ = code_of(lambda stub=stub: stub.Describe(describe, metadata=bearer(TOKEN), timeout=5))
                assert code == grpc.StatusCode.UNAVAILABLE, client
    finally:
        server.stop(None)


def health_command(port: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAHARA_")}
    return subprocess.run(
        [sys.executable, "-m", "sahara_sidecar", "health", "--port", str(port), "--timeout", "5", *args],
        cwd=SIDECAR,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_health_command_over_tls_and_mutual_tls(lm, pki):
    server, port = serve(lm, tls_security(pki))
    try:
        ok = health_command(port, "--tls-ca", str(pki["ca"]))
        assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING"), ok.stderr
        named = health_command(port, "--tls-ca", str(pki["ca"]), "--tls-server-name", "localhost")
        assert named.returncode == 0, named.stderr
        assert health_command(port).returncode == 1  # plaintext to a TLS port
        wrong = health_command(port, "--tls-ca", str(pki["ca"]), "--tls-server-name", "elsewhere.example")
        assert wrong.returncode == 1
        bad = health_command(port, "--tls-client-cert", str(pki["client_cert"]))
        assert bad.returncode == 2 and "need --tls-ca" in bad.stderr
    finally:
        server.stop(None)
    server, port = serve(lm, tls_security(pki, mutual=True))
    try:
        assert health_command(port, "--tls-ca", str(pki["ca"])).returncode == 1
        mutual = health_command(
            port,
            "--tls-ca",
            str(pki["ca"]),
            "--tls-client-cert",
            str(pki["client_cert"]),
            "--tls-client-key",
            str(pki["client_key"]),
        )
        assert (mutual.returncode, mutual.stdout.strip()) == (0, "SERVING"), mutual.stderr
    finally:
        server.stop(None)


def test_serve_on_all_interfaces_with_tls_and_token(lm, pki, tmp_path):
    """The real command line: TLS paths from SAHARA_TLS_*, the token from a file; health via env too."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAHARA_")}
    env |= {"SAHARA_TLS_CERT": str(pki["server_cert"]), "SAHARA_TLS_KEY": str(pki["server_key"])}
    command = [sys.executable, "-m", "sahara_sidecar", "serve", "--model", lm.name, "--host", "0.0.0.0", "--threads"]
    proc = subprocess.Popen(
        [*command, "1", "--token-file", str(token_file)],
        cwd=SIDECAR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        ready = json.loads(proc.stdout.readline())
        assert (ready["tls"], ready["token"], ready["host"]) == (True, True, "0.0.0.0")
        health = subprocess.run(
            [sys.executable, "-m", "sahara_sidecar", "health", "--port", str(ready["port"])],
            cwd=SIDECAR,
            capture_output=True,
            text=True,
            env={**env, "SAHARA_TLS_CA": str(pki["ca"]), "SAHARA_TLS_SERVER_NAME": "localhost"},
            timeout=60,
        )
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        with tls_channel(ready["port"], pki) as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            assert stub.Describe(sahara_pb2.DescribeRequest(), metadata=bearer(TOKEN), timeout=10).family == "llama"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
