"""The gRPC services: grpc.health.v1 Health and sahara.v1 AblationService.

Requests are validated here, into the sidecar's own types (ablation.AblationSpec, template
names), before any model work; every problem becomes INVALID_ARGUMENT naming the field and
index. The model is shared, and hooks are installed on it per forward, so model work runs
one batch at a time, all of it on one thread (ModelThread); a batch that runs out of memory is
split (memory.py), a single row that does not fit becomes RESOURCE_EXHAUSTED, anything unexpected
becomes INTERNAL, and the server keeps serving.

Forward and Attribute streams: header, chunks, then one ForwardStats (stats.py) as the last message.

Limits (Limits, set by `serve` options): request size (security.RequestGate, RESOURCE_EXHAUSTED),
prompts and specs per request (RESOURCE_EXHAUSTED), max_new_tokens (INVALID_ARGUMENT), prompt length
against the model's positions (INVALID_ARGUMENT); every message names the option or field to change.
Authentication and TLS: security.py.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import TypeVar

import grpc
import torch
import transformers
from google.protobuf import message_factory

from . import __version__, loading
from .ablation import AblationError, AblationSpec, validate_spec
from .attribution import attribute
from .engines import run_forward
from .fast import OUTPUT_BUFFER_BYTES
from .generate import DEFAULT_MAX_NEW_TOKENS, Sampling, generate
from .host_buffers import HostBuffers
from .memory import MAX_BUDGET_GIB, ResourceExhausted, budget_in_range
from .peak import measure_peak
from .prompts import PromptError, encode
from .protos import health_pb2, health_pb2_grpc, sahara_pb2, sahara_pb2_grpc
from .security import MIB, RequestGate, Security, core_receive_limit
from .stats import ForwardStats
from .support import SupportReducer
from .tensors import ChunkWriter, serialize_response

log = logging.getLogger("sahara_sidecar")

SERVICE_NAME = "sahara.v1.AblationService"
DEFAULT_MAX_BATCH_ROWS = 0  # no server-wide cap: Forward/Attribute batches come from the memory budget
GENERATE_BATCH_ROWS = 64  # Generate's batch when neither the request nor the server sets one
MAX_MESSAGE_BYTES = 64 << 20
MAX_PEAK_SIZE = 16384
MAX_PEAK_SECONDS = 60.0

# What Forward and Attribute stream: header and stats as messages, chunks already encoded.
ForwardPart = sahara_pb2.ForwardResponse | bytes

_METHODS = {
    sahara_pb2.ABLATION_METHOD_UA: "ua",
    sahara_pb2.ABLATION_METHOD_SC: "sc",
    sahara_pb2.ABLATION_METHOD_MEAN: "mean",
}
_ENGINES = {
    sahara_pb2.ENGINE_UNSPECIFIED: "fast",
    sahara_pb2.ENGINE_FAST: "fast",
    sahara_pb2.ENGINE_NAIVE: "naive",
}
_TEMPLATES = {
    sahara_pb2.PROMPT_TEMPLATE_UNSPECIFIED: "paper",
    sahara_pb2.PROMPT_TEMPLATE_PAPER: "paper",
    sahara_pb2.PROMPT_TEMPLATE_DIRECT: "direct",
    sahara_pb2.PROMPT_TEMPLATE_CHAT: "chat",
}
_DTYPES = {
    torch.float32: sahara_pb2.DTYPE_FLOAT32,
    torch.float64: sahara_pb2.DTYPE_FLOAT64,
    torch.bfloat16: sahara_pb2.DTYPE_BFLOAT16,
    torch.float16: sahara_pb2.DTYPE_FLOAT16,
}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (serve's --max-* options)."""

    max_request_bytes: int = 16 * MIB
    max_prompts: int = 4096
    max_specs: int = 16384
    max_new_tokens: int = 2048


class InvalidRequest(ValueError):
    """A request the client must fix; becomes INVALID_ARGUMENT with this message."""


class TooLarge(ValueError):
    """A request over one of the server's limits; becomes RESOURCE_EXHAUSTED with this message."""


def check_count(field: str, count: int, limit: int, option: str) -> None:
    if count > limit:
        raise TooLarge(
            f"{field}: {count:,} in one request, over this sidecar's limit of {limit:,} ({option}); "
            f"split the work into requests of at most {limit:,} {field}, or start the sidecar with a larger {option}"
        )


# --- validation: proto -> sidecar types ---------------------------------------------------


def to_spec(spec: sahara_pb2.AblationSpec, lm: loading.LoadedModel, where: str) -> AblationSpec:
    heads = tuple((h.layer, h.head) for h in spec.heads)
    if not math.isfinite(spec.eps):
        raise InvalidRequest(f"{where}.eps: must be a finite number, got {spec.eps}")
    if not heads:
        return AblationSpec()  # the clean model; method and eps do not matter
    if spec.method not in _METHODS:
        name = sahara_pb2.AblationMethod.Name(spec.method) if spec.method == 0 else str(spec.method)
        raise InvalidRequest(f"{where}.method: {name} is not a method; a spec with heads needs UA, SC or MEAN")
    converted = AblationSpec(heads=heads, method=_METHODS[spec.method], eps=spec.eps)
    validate_spec(converted, lm.geometry, where=where)
    return converted


def to_template(template: int) -> str:
    if template not in _TEMPLATES:
        raise InvalidRequest(f"template: unknown value {template}; expected PAPER, DIRECT or CHAT")
    return _TEMPLATES[template]


def to_support(request: sahara_pb2.ForwardRequest, vocab_size: int) -> int:
    """ForwardRequest.logprob_support, checked: 0 (every token) or 1..vocab_size - 1, with log-probs."""
    k = request.logprob_support
    if k and not request.return_logprobs:
        raise InvalidRequest(f"logprob_support: {k} without return_logprobs; it shapes the log-probs only")
    if k >= vocab_size:
        raise InvalidRequest(
            f"logprob_support: {k} is not below the vocabulary size {vocab_size}; send 0 for every token"
        )
    return k


def to_engine(engine: int) -> str:
    if engine not in _ENGINES:
        raise InvalidRequest(f"engine: unknown value {engine}; expected FAST (or UNSPECIFIED) or NAIVE")
    return _ENGINES[engine]


def to_budget(memory_budget_gib: float) -> float:
    if not budget_in_range(memory_budget_gib):
        raise InvalidRequest(
            f"memory_budget_gib: must be a number from 0 (auto) to {MAX_BUDGET_GIB:g}, got {memory_budget_gib}"
        )
    return memory_budget_gib


def to_attribution_method(method: int) -> str:
    if method == sahara_pb2.ABLATION_METHOD_MEAN:
        raise InvalidRequest(
            "method: MEAN has no scale to differentiate, so it cannot be attributed; "
            "use UA or SC here, and score MEAN heads exactly with Forward"
        )
    if method not in (sahara_pb2.ABLATION_METHOD_UA, sahara_pb2.ABLATION_METHOD_SC):
        name = sahara_pb2.AblationMethod.Name(method) if method == 0 else str(method)
        raise InvalidRequest(f"method: {name} is not a method Attribute supports; use UA or SC")
    return _METHODS[method]


def encode_prompts(
    prompts: list[str], template: int, lm: loading.LoadedModel, limits: Limits | None = None
) -> list[list[int]]:
    if not prompts:
        raise InvalidRequest("prompts: no prompts given; send at least one")
    if limits is not None:
        check_count("prompts", len(prompts), limits.max_prompts, "--max-prompts")
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise InvalidRequest(f"prompts[{i}] is an empty string")
    ids = encode(prompts, to_template(template), lm.tokenizer)
    limit = loading.max_positions(lm.model)
    for i, row in enumerate(ids):
        if limit and len(row) > limit:
            raise InvalidRequest(
                f"prompts[{i}] has {len(row)} tokens; the model takes at most {limit} positions; "
                "shorten or drop that prompt"
            )
        if not row:
            raise InvalidRequest(
                f"prompts[{i}] has no tokens after templating; give it some text or use another template"
            )
    return ids


# --- services ------------------------------------------------------------------------------


T = TypeVar("T")


class ModelThread:
    """The one thread that runs model work, one step at a time, whichever gRPC thread asks.

    Serialising is needed anyway (hooks live on the shared model). Doing it on one thread rather than
    under a lock taken by whichever handler thread holds the request matters on CPU: every thread that
    enters torch's OpenMP parallel regions gets its own team of worker threads, and the idle teams of
    the other handler threads spin on the same cores (measured on 2 cores: a fast Ships scan of the
    organism 15-20% slower from a second thread than from the first, 60-80% with OMP_WAIT_POLICY=ACTIVE).
    """

    def __init__(self) -> None:
        threads = torch.get_num_threads()  # set by `serve --threads` before this; a new thread starts at the default
        self._executor = futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sahara-model", initializer=torch.set_num_threads, initargs=(threads,)
        )

    def call(self, work: Callable[..., T], *args: object) -> T:
        return self._executor.submit(work, *args).result()

    def steps(self, items: Iterator[T], last: Callable[[T], bool] = lambda _: False) -> Iterator[T]:
        """Advance `items` (model work; hooks are model-global) one step per call on the model thread;
        the caller gets each item between steps.

        After the item `last` recognises, no further step is asked for: it would only find the end of
        `items`, yet wait behind the step of every other request queued meanwhile, holding this
        stream's end (and the client's next request) for as long (measured: 0.6 s of a 2 s Ships
        scan). Model-work iterators hold no model state across their yields, so the unfinished
        iterator is simply dropped."""
        finished = object()
        while True:
            item = self.call(next, items, finished)
            if item is finished:
                return
            yield item  # type: ignore[misc]
            if last(item):  # type: ignore[arg-type]
                return


class AblationService(sahara_pb2_grpc.AblationServiceServicer):
    def __init__(
        self,
        lm: loading.LoadedModel,
        default_max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        default_memory_budget_gib: float = 0.0,
        limits: Limits | None = None,
    ) -> None:
        self.lm = lm
        self.limits = limits or Limits()
        self.default_max_batch_rows = default_max_batch_rows  # 0 = no cap
        self.default_memory_budget_gib = default_memory_budget_gib  # 0 = auto
        self.model_thread = ModelThread()
        # Two full blocks: the blocks of the two requests the CLI keeps in flight (host_buffers.py).
        self.output_buffers = HostBuffers(max_free_bytes=2 * OUTPUT_BUFFER_BYTES)

    def Describe(
        self, request: sahara_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> sahara_pb2.DescribeResponse:
        return self._guard(context, lambda: describe(self.lm))

    def Forward(self, request: sahara_pb2.ForwardRequest, context: grpc.ServicerContext) -> Iterator[ForwardPart]:
        return self._guard_stream(context, lambda: self._forward(request))

    def Generate(
        self, request: sahara_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> Iterator[sahara_pb2.GenerateResponse]:
        return self._guard_stream(context, lambda: self._generate(request))

    def Attribute(self, request: sahara_pb2.AttributeRequest, context: grpc.ServicerContext) -> Iterator[ForwardPart]:
        return self._guard_stream(context, lambda: self._attribute(request))

    def MeasurePeak(
        self, request: sahara_pb2.MeasurePeakRequest, context: grpc.ServicerContext
    ) -> sahara_pb2.MeasurePeakResponse:
        return self._guard(context, lambda: self._measure_peak(request))

    def CountTokens(
        self, request: sahara_pb2.CountTokensRequest, context: grpc.ServicerContext
    ) -> sahara_pb2.CountTokensResponse:
        return self._guard(context, lambda: self._count_tokens(request))

    def _count_tokens(self, request: sahara_pb2.CountTokensRequest) -> sahara_pb2.CountTokensResponse:
        # Tokenizing only, on the handler thread as Forward does: it need not queue behind model work.
        ids = encode_prompts(list(request.prompts), request.template, self.lm, self.limits)
        return sahara_pb2.CountTokensResponse(prompt_tokens=[len(row) for row in ids])

    def _forward(self, request: sahara_pb2.ForwardRequest) -> Iterator[ForwardPart]:
        lm = self.lm
        prompt_ids = encode_prompts(list(request.prompts), request.template, lm, self.limits)
        if not request.specs:
            raise InvalidRequest(
                "specs: no ablation specs given; send at least one (a spec with no heads is the clean model)"
            )
        check_count("specs", len(request.specs), self.limits.max_specs, "--max-specs")
        specs = [to_spec(spec, lm, f"specs[{i}]") for i, spec in enumerate(request.specs)]
        if not (request.return_logprobs or request.return_hidden):
            raise InvalidRequest("return_logprobs and return_hidden are both false; ask for at least one")
        engine = to_engine(request.engine)
        budget = to_budget(request.memory_budget_gib) or self.default_memory_budget_gib
        support = to_support(request, lm.vocab_size)

        n, m = len(prompt_ids), len(specs)
        reducer = SupportReducer(m, support) if support else None
        writers: dict[str, ChunkWriter] = {}
        header = sahara_pb2.ForwardHeader(prompt_tokens=[len(ids) for ids in prompt_ids])
        for name, wanted, width in (
            ("logprobs", request.return_logprobs, support + 1 if support else lm.vocab_size),
            ("hidden", request.return_hidden, lm.geometry.hidden_size),
        ):
            if wanted:
                writers[name] = ChunkWriter(name)
                header.tensors.append(
                    sahara_pb2.TensorHeader(
                        name=name, dtype=sahara_pb2.DTYPE_FLOAT32, shape=[n, m, width], byte_length=n * m * width * 4
                    )
                )
        yield sahara_pb2.ForwardResponse(header=header)

        stats = ForwardStats()
        batches = run_forward(
            lm,
            prompt_ids,
            specs,
            engine=engine,
            want_logprobs=request.return_logprobs,
            want_hidden=request.return_hidden,
            max_batch_rows=request.max_batch_rows or self.default_max_batch_rows,
            memory_budget_gib=budget,
            stats=stats,
            output_buffers=self.output_buffers,
        )
        for batch in self.model_thread.steps(batches, last=lambda b: b.rows.stop == n * m):
            for name, tensor in (("logprobs", batch.logprobs), ("hidden", batch.hidden)):
                if tensor is not None:
                    sent = reducer.reduce(batch.rows, tensor) if reducer and name == "logprobs" else tensor
                    yield from writers[name].write(sent)
                    self.output_buffers.give(tensor)  # copied into the chunks just sent: the next block may use it
        for writer in writers.values():
            yield from writer.flush()
        yield _stats(stats)

    def _attribute(self, request: sahara_pb2.AttributeRequest) -> Iterator[ForwardPart]:
        lm = self.lm
        prompt_ids = encode_prompts(list(request.prompts), request.template, lm, self.limits)
        method = to_attribution_method(request.method)
        if not math.isfinite(request.eps):
            raise InvalidRequest(f"eps: must be a finite number, got {request.eps}")
        geo = lm.geometry
        shape = [len(prompt_ids), geo.num_layers, geo.num_heads]
        header = sahara_pb2.ForwardHeader(prompt_tokens=[len(ids) for ids in prompt_ids])
        header.tensors.append(
            sahara_pb2.TensorHeader(
                name="attribution", dtype=sahara_pb2.DTYPE_FLOAT32, shape=shape, byte_length=math.prod(shape) * 4
            )
        )
        yield sahara_pb2.ForwardResponse(header=header)
        stats = ForwardStats()
        writer = ChunkWriter("attribution")
        batches = attribute(
            lm,
            prompt_ids,
            method=method,
            eps=request.eps,
            max_batch_rows=request.max_batch_rows or self.default_max_batch_rows,
            memory_budget_gib=self.default_memory_budget_gib,
            stats=stats,
        )
        for batch in self.model_thread.steps(batches, last=lambda b: b.prompts.stop == len(prompt_ids)):
            yield from writer.write(batch.attribution)
        yield from writer.flush()
        yield _stats(stats)

    def _measure_peak(self, request: sahara_pb2.MeasurePeakRequest) -> sahara_pb2.MeasurePeakResponse:
        if request.size > MAX_PEAK_SIZE:
            raise InvalidRequest(f"size: at most {MAX_PEAK_SIZE}, got {request.size} (0 = auto)")
        seconds = request.min_seconds
        if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_PEAK_SECONDS:
            raise InvalidRequest(f"min_seconds: must be between 0 and {MAX_PEAK_SECONDS:g} (0 = 1 s), got {seconds}")
        peak = self.model_thread.call(measure_peak, self.lm.device, self.lm.dtype, request.size, seconds)
        return sahara_pb2.MeasurePeakResponse(
            flops_per_second=peak.flops_per_second,
            dtype=_DTYPES.get(peak.dtype, sahara_pb2.DTYPE_UNSPECIFIED),
            size=peak.size,
            device=str(peak.device),
            repeats=peak.repeats,
        )

    def _generate(self, request: sahara_pb2.GenerateRequest) -> Iterator[sahara_pb2.GenerateResponse]:
        lm = self.lm
        prompt_ids = encode_prompts(list(request.prompts), request.template, lm, self.limits)
        spec = to_spec(request.spec, lm, "spec")
        if request.max_new_tokens > self.limits.max_new_tokens:
            raise InvalidRequest(
                f"max_new_tokens: {request.max_new_tokens:,} is over this sidecar's limit of "
                f"{self.limits.max_new_tokens:,} (--max-new-tokens); ask for fewer, "
                "or start the sidecar with a larger --max-new-tokens"
            )
        sampling = Sampling(
            top_k=request.sampling.top_k, temperature=request.sampling.temperature or 1.0, seed=request.sampling.seed
        )
        if not (math.isfinite(sampling.temperature) and sampling.temperature > 0):
            raise InvalidRequest(f"sampling.temperature: must be a positive number, got {sampling.temperature}")
        replies = generate(
            lm,
            prompt_ids,
            spec,
            max_new_tokens=request.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            sampling=sampling,
            max_batch_rows=request.max_batch_rows or self.default_max_batch_rows or GENERATE_BATCH_ROWS,
        )
        for reply in self.model_thread.steps(replies, last=lambda r: r.index == len(prompt_ids) - 1):
            yield sahara_pb2.GenerateResponse(
                index=reply.index, text=reply.text, new_tokens=reply.new_tokens, stopped_at_eos=reply.stopped_at_eos
            )

    @staticmethod
    def _guard(context: grpc.ServicerContext, work: Callable[[], T]) -> T:
        try:
            return work()
        except (InvalidRequest, AblationError, PromptError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (ResourceExhausted, TooLarge) as err:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except Exception as err:  # every other failure is reported, and the server goes on
            log.exception("request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")

    @staticmethod
    def _guard_stream(context: grpc.ServicerContext, work: Callable[[], Iterator[T]]) -> Iterator[T]:
        try:
            yield from work()
        except (InvalidRequest, AblationError, PromptError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (ResourceExhausted, TooLarge) as err:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except Exception as err:
            log.exception("request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")


def _stats(stats: ForwardStats) -> sahara_pb2.ForwardResponse:
    return sahara_pb2.ForwardResponse(
        stats=sahara_pb2.ForwardStats(
            compute_seconds=stats.compute_seconds,
            forwards=stats.forwards,
            rows=stats.rows,
            layer_tokens=stats.layer_tokens,
            flops=stats.flops,
            max_batch_rows=stats.max_batch_rows,
            oom_splits=stats.oom_splits,
        )
    )


def describe(lm: loading.LoadedModel) -> sahara_pb2.DescribeResponse:
    model, tokenizer, geo = lm.model, lm.tokenizer, lm.geometry
    parameters, total = loading.parameter_facts(model)
    return sahara_pb2.DescribeResponse(
        model=lm.name,
        family=str(model.config.model_type),
        num_layers=geo.num_layers,
        num_heads=geo.num_heads,
        num_kv_heads=geo.num_kv_heads,
        head_dim=geo.head_dim,
        hidden_size=geo.hidden_size,
        vocab_size=lm.vocab_size,
        dtype=_DTYPES.get(lm.dtype, sahara_pb2.DTYPE_UNSPECIFIED),
        device=str(lm.device),
        parameters=[sahara_pb2.ParameterCount(name=p.name, shape=list(p.shape), count=p.count) for p in parameters],
        total_parameters=total,
        q_proj_bias=loading.query_bias(model),
        o_proj_bias=loading.output_bias(model),
        queries_normalised=loading.queries_normalised(model),
        max_positions=loading.max_positions(model),
        has_chat_template=lm.has_chat_template,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
        sidecar_version=__version__,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        model_fingerprint=lm.fingerprint,
    )


class HealthService(health_pb2_grpc.HealthServicer):
    """Standard health checks: SERVING for "" and the ablation service while the model is up."""

    SERVICES = ("", SERVICE_NAME)

    def __init__(self) -> None:
        self.status = health_pb2.HealthCheckResponse.SERVING

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self.SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self.status)

    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        """Sends the current status once, then ends the stream."""
        if request.service not in self.SERVICES:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        yield health_pb2.HealthCheckResponse(status=self.status)


def service_handler(service: AblationService) -> grpc.GenericRpcHandler:
    """The ablation service's methods, as the generated add_AblationServiceServicer_to_server
    registers them but with `serialize_response`, so that streams may carry encoded chunks."""
    descriptor = sahara_pb2.DESCRIPTOR.services_by_name["AblationService"]
    handlers = {}
    for method in descriptor.methods:
        handler = (
            grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = handler(
            getattr(service, method.name),
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=serialize_response,
        )
    return grpc.method_handlers_generic_handler(descriptor.full_name, handlers)


def build_server(
    lm: loading.LoadedModel,
    host: str = "127.0.0.1",
    port: int = 0,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    memory_budget_gib: float = 0.0,
    *,
    limits: Limits | None = None,
    security: Security | None = None,
) -> tuple[grpc.Server, int, HealthService]:
    """A started server and the port it listens on (port 0 picks a free one).

    TLS when `security` has a certificate; every call but health needs its token when it has one.
    """
    limits = limits or Limits()
    security = security or Security()
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", core_receive_limit(limits.max_request_bytes)),
    ]
    gate = RequestGate(security.token, limits.max_request_bytes)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options, interceptors=[gate])
    health = HealthService()
    server.add_generic_rpc_handlers((service_handler(AblationService(lm, max_batch_rows, memory_budget_gib, limits)),))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if security.tls:
        bound = server.add_secure_port(address, security.server_credentials())
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server, bound, health
