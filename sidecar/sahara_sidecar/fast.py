"""The fast engine: many specs per forward, each row resumed where its ablation first acts.

An ablation whose first head is in layer l leaves the inputs of layers 0..l exactly as in the
clean model (hooks act inside layer l and above). Likewise a spec G + {h} agrees below h's layer
with the model that has G ablated (a Sahara step: every spec shares the group G), so such rows
resume from a G-ablated row instead (common_base). So, per block of prompts (consecutive, the unit
streamed back), and inside it per bucket of prompts of similar length (less padding):

1. one model call on the bucket (left padded) with every decoder layer short-circuited, that only
   records what the decoder passes each layer besides the hidden state (attention mask, position
   embeddings, position ids, ...) and layer 0's input (the embeddings); no layer is computed.
2. one batch runs every layer once: first a base row per prompt (the clean model, or G ablated)
   from the embeddings, then the ablated rows (prompt b, spec m) sorted by the layer l where
   their spec first differs from the base; they join the batch at layer l with their prompt's
   base row's input of layer l, copied from that row within the same batch. Every batch-dimension
   tensor of the recorded arguments is indexed by row -> prompt (broadcast dimensions are kept),
   the spec hooks are installed (ablation.ablated), then the final norm and lm_head run on the
   last position only. The base rows' own results are the clean (or G-ablated) rows.

Rows keep the bucket's padding and lengths, so a resumed row computes what a full forward of
the same padded batch computes; the logits come from the causal LM's own head code (head_logits).
The last layer's attention, o_proj and MLP run for the last position only (attention_reuse,
last_layer_sliced), the only position whose output is read. A row joining at its start layer
copies its base row's q/k/v projections there and the attention of every head that neither
ablates at that layer; only its ablated heads' attention is computed
(attention_reuse: on the organism that is a 4th of the start layer's attention, on a 7B a 32nd).
On a CPU every MLP runs on slices of the batch that fit the cache (module_patches.mlps_in_chunks).

Per-family forward code is not needed: whatever the decoder passes its layers is replayed; the
one assumption is that those arguments do not depend on earlier layers' outputs (true of masks,
positions and caches in every family transformers has). Results stream per block, in row order (r = n*M + m).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .ablation import AblationSpec, ablated, attention_modules, decoder_layers
from .attention_reuse import LayerPlan, StartReuse, plan_start_reuse, planned_attention, projections_reused
from .forward import BatchResult, forward_rows, last_position_logits
from .host_buffers import HostBuffers
from .loading import LoadedModel
from .memory import activation_bytes_per_row, budget_bytes, plan_batch_rows, run_in_batches
from .module_patches import forwards_replaced, mlps_in_chunks
from .prompts import left_pad
from .stats import ForwardStats, ModelCost, head_flops, layer_flops, model_cost

REUSABLE_ATTENTION = ("eager", "sdpa")  # masks are plain tensors that can be indexed by row
OUTPUT_BUFFER_BYTES = 1 << 30  # host memory for one block's results before they are streamed
# Rows per forward worth filling before padding costs more than it saves (a CPU is efficient at
# small batches already; a GPU needs large ones).
# CPU: 192 since the MLP runs in cache-sized slices (module_patches); before, larger batches paid
# for MLP activations that overflowed the cache and 96-256 measured flat.
MIN_EFFICIENT_ROWS = {"cpu": 192, "cuda": 256}


@dataclass
class LayerCall:
    """What the decoder passed one layer."""

    hidden: torch.Tensor | None  # [B, T, d], the layer's input residual stream (where wanted)
    args: tuple[object, ...]  # further positional arguments
    kwargs: dict[str, object]


@dataclass
class RecordedArgs:
    """What the decoder passes its layers for one bucket of prompts."""

    calls: dict[int, LayerCall]  # every layer; hidden only for layer 0 (the embeddings)
    prompts: int  # B
    width: int  # T, padded


def first_layer(spec: AblationSpec) -> int | None:
    return min(layer for layer, _ in spec.heads) if spec.heads else None


CLEAN = AblationSpec()


def common_base(specs: Sequence[AblationSpec]) -> AblationSpec | None:
    """The heads every spec with heads shares (same method and eps), e.g. a Sahara step's group G.

    A spec G + {h} agrees with the G-ablated model below h's layer, so its rows can resume from a
    pass with G ablated instead of a clean one. None when there is no such common part.
    """
    ablating = [spec for spec in specs if not spec.is_clean]
    if not ablating or len({(spec.method, spec.eps) for spec in ablating}) != 1:
        return None
    shared = set(ablating[0].heads).intersection(*(set(spec.heads) for spec in ablating[1:]))
    if not shared:
        return None
    return AblationSpec(tuple(sorted(shared)), ablating[0].method, ablating[0].eps)


def assign_bases(
    specs: Sequence[AblationSpec],
) -> tuple[list[AblationSpec], list[tuple[int, int | None]]]:
    """The base passes, and for every spec (base index, layer to resume at; None = the base's own result).

    Base 0 is the clean model; base 1, if any, is common_base(specs).
    """
    bases = [CLEAN]
    common = common_base(specs)
    if common is not None:
        bases.append(common)
    plan: list[tuple[int, int | None]] = []
    for spec in specs:
        if spec.is_clean:
            plan.append((0, None))
        elif common is not None:
            extra = AblationSpec(tuple(h for h in spec.heads if h not in set(common.heads)), spec.method, spec.eps)
            plan.append((1, first_layer(extra)))
        else:
            plan.append((0, first_layer(spec)))
    return bases, plan


def reuse_supported(lm: LoadedModel) -> bool:
    return getattr(lm.model.config, "_attn_implementation", "eager") in REUSABLE_ATTENTION


@contextmanager
def capture_layer_inputs(layers: Sequence[nn.Module], wanted: set[int]) -> Iterator[dict[int, LayerCall]]:
    """Record every layer's arguments; keep the input hidden state only for the layers in `wanted`."""
    captured: dict[int, LayerCall] = {}
    handles = []

    def hook(index: int):
        def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            rest = dict(kwargs)
            hidden = args[0] if args else rest.pop("hidden_states")
            captured[index] = LayerCall(hidden if index in wanted else None, tuple(args[1:]), rest)

        return record

    try:
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(hook(index), with_kwargs=True))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _last_position(_module: nn.Module, args: tuple) -> tuple:
    return (args[0][:, -1:, :], *args[1:])


@contextmanager
def last_layer_sliced(model: nn.Module) -> Iterator[None]:
    """Only the last position leaves the last decoder layer usefully: o_proj and the MLP of that
    layer run on the last position alone (pre-hooks slice their input to [rows, 1, .]).

    Attention still reads every position's keys and values; its [rows, 1, d] output is added to
    the [rows, T, d] residual by broadcasting, so the last position is exact and the others, which
    nothing reads, are not. Valid wherever the MLP is position-wise and its output is added to the
    residual stream, as in every decoder family the sidecar loads.
    """
    last = decoder_layers(model)[-1]
    handles = [last.self_attn.o_proj.register_forward_pre_hook(_last_position)]
    mlp = getattr(last, "mlp", None)
    if isinstance(mlp, nn.Module):
        handles.append(mlp.register_forward_pre_hook(_last_position))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Recorded(Exception):
    """Raised by the last short-circuited layer: every layer's arguments are recorded."""


def _pass_through(hidden: torch.Tensor, *_args: object, **_kwargs: object) -> torch.Tensor:
    return hidden


def _stop(*_args: object, **_kwargs: object) -> torch.Tensor:
    raise _Recorded


def layers_short_circuited(layers: Sequence[nn.Module]) -> contextlib.AbstractContextManager[None]:
    """Every decoder layer returns its input unchanged (its pre-hooks still run); the last raises
    _Recorded, so the model call ends there."""
    return forwards_replaced(layers, [_pass_through] * (len(layers) - 1) + [_stop])


def record_layer_args(lm: LoadedModel, ids: Sequence[Sequence[int]]) -> RecordedArgs:
    """The arguments of every decoder layer for this left-padded batch, without computing any layer."""
    batch = left_pad(ids, lm.pad_token_id, lm.device)
    layers = decoder_layers(lm.model)
    with (
        torch.inference_mode(),
        capture_layer_inputs(layers, {0}) as calls,
        layers_short_circuited(layers),
        contextlib.suppress(_Recorded),
    ):
        last_position_logits(lm, batch)
    if len(calls) != len(layers):
        raise RuntimeError(f"the decoder called {len(calls)} of its {len(layers)} layers; the fast engine needs all")
    return RecordedArgs(dict(calls), len(ids), batch.input_ids.shape[1])


class _RowSelector:
    """Index the batch dimension of recorded arguments by row -> prompt, each tensor once."""

    def __init__(self, prompts: int, index: torch.Tensor) -> None:
        self.prompts = prompts
        self.index = index
        self.done: dict[int, torch.Tensor] = {}

    def __call__(self, value: object) -> object:
        if isinstance(value, torch.Tensor):
            # 1-D tensors (e.g. cache positions) are never per-row; size-1 leading dims broadcast.
            if value.dim() < 2 or value.shape[0] != self.prompts:
                return value
            key = id(value)
            if key not in self.done:
                self.done[key] = value.index_select(0, self.index)
            return self.done[key]
        if isinstance(value, tuple):
            return tuple(self(v) for v in value)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value


class _DecoderOutput:
    """What head_logits' stand-in decoder returns: the final hidden states; any other field the
    causal LM reads from it (cache, attentions, image states) is None."""

    def __init__(self, last_hidden_state: torch.Tensor) -> None:
        self.last_hidden_state = last_hidden_state

    def __getattr__(self, name: str) -> None:  # only called for attributes not set above
        return None

    def __getitem__(self, index: int) -> torch.Tensor:
        if index != 0:
            raise IndexError(index)
        return self.last_hidden_state


def head_logits(lm: LoadedModel, normed: torch.Tensor) -> torch.Tensor:
    """The causal LM's own head on final-norm outputs [rows, 1, d]: its forward runs with its
    decoder (the base model) standing in, returning `normed`, so whatever the family does around
    lm_head applies as in a full forward: Granite divides the logits by logits_scaling, Cohere
    multiplies by logit_scale, Gemma 2/3 soft-cap them, MiniCPM scales the hidden state first.
    (Re-implementing that here missed Granite's division: log-probs off by nats, silently.)"""
    decoder = lm.model.base_model
    if decoder is lm.model:  # a base_model_prefix that names no attribute (Llama 4): the usual .model
        decoder = getattr(lm.model, "model", None)
    if not isinstance(decoder, nn.Module):
        raise RuntimeError(f"{type(lm.model).__name__}: no base model under the causal LM head")
    with forwards_replaced([decoder], [lambda *_args, **_kwargs: _DecoderOutput(normed)]):
        return lm.model(inputs_embeds=normed, use_cache=False).logits


def _prefix(value: object, selected: set[int], rows: int) -> object:
    """The first `rows` rows of every tensor in `selected` (the row-indexed arguments), views."""
    if isinstance(value, torch.Tensor):
        return value[:rows] if id(value) in selected else value
    if isinstance(value, tuple):
        return tuple(_prefix(v, selected, rows) for v in value)
    if isinstance(value, list):
        return [_prefix(v, selected, rows) for v in value]
    if isinstance(value, dict):
        return {k: _prefix(v, selected, rows) for k, v in value.items()}
    return value


def _start_reuses(
    starts: Sequence[int],
    prompts: Sequence[int],
    specs: Sequence[AblationSpec],
    base_rows: int,
    per_group: int,
    device: torch.device,
) -> dict[int, StartReuse]:
    """resume's reuse plan of every layer where rows join next to base rows in the batch (rows
    [split, rows) join layer i; split: the rows that were there before, and at least the base rows)."""
    reuses: dict[int, StartReuse] = {}
    if not base_rows:
        return reuses
    done = 0
    for i in range(starts[0], max(starts) + 1):
        rows = bisect.bisect_right(starts, i)
        split = max(done, base_rows)
        if rows > split:
            reuse = plan_start_reuse(
                i, split, prompts[:base_rows], prompts[split:rows], specs[:base_rows], specs[split:rows],
                per_group, device,
            )  # fmt: skip
            if reuse is not None:
                reuses[i] = reuse
        done = rows
    return reuses


@dataclass
class Resumed:
    """What one resume call returns: the rows' results and the work it did."""

    logprobs: torch.Tensor | None  # [rows, vocab] float32 on the CPU
    hidden: torch.Tensor | None  # [rows, hidden_size]
    layer_tokens: int  # rows x padded tokens, summed over the layers run
    flops: float  # stats.layer_flops of every layer as run, and lm_head


def resume(
    lm: LoadedModel,
    recorded: RecordedArgs,
    starts: Sequence[int],
    prompts: Sequence[int],
    specs: Sequence[AblationSpec],
    *,
    base_rows: int = 0,
    want_logprobs: bool,
    want_hidden: bool,
    cost: ModelCost | None = None,
) -> Resumed:
    """Rows (prompts[i], specs[i]), each from the recorded input of layer starts[i] of its prompt,
    through the last layer: one batch per layer, rows sorted by start layer (non-decreasing), so
    that the rows of layer l are a prefix of the batch: the rows that started below l, joined by
    those that start at l. Every layer thus runs once, on all the rows that need it; each row's
    values are those of running it alone from its start layer.

    The first `base_rows` rows (start 0) are base rows: at every layer whose recorded input is a
    tensor to fill, their input is written there (by prompt) before any row joins at that layer,
    so later rows, in this batch or the next, start from it. Rows joining a layer where their base
    row is in the batch copy its q/k/v projections and the attention of the heads neither ablates
    there; the last layer computes attention, o_proj and the MLP for the last position only
    (attention_reuse, last_layer_sliced)."""
    if any(a > b for a, b in itertools.pairwise(starts)):
        raise ValueError("resume: rows must be sorted by start layer")
    if any(start != 0 for start in starts[:base_rows]):
        raise ValueError("resume: base rows start at layer 0")
    cost = cost or model_cost(lm)
    layers = decoder_layers(lm.model)
    attentions = attention_modules(lm.model)
    per_group = lm.geometry.num_heads // lm.geometry.num_kv_heads
    last_layer = len(layers) - 1
    index = torch.tensor(list(prompts), dtype=torch.long, device=lm.device)
    select = _RowSelector(recorded.prompts, index)
    hidden: torch.Tensor | None = None
    layer_tokens, flops = 0, 0.0
    with (
        torch.inference_mode(),
        last_layer_sliced(lm.model),
        mlps_in_chunks(layers, lm.device),
        planned_attention(lm.model) as plans,
        ablated(lm.model, specs, prefixes=True),  # layer i runs the first `rows` rows
    ):
        # Every layer's reuse is planned before the first layer runs: planning copies index tensors
        # to the device, and such a copy waits for the device's queue, which would leave a GPU idle
        # at every layer while the next one is prepared.
        reuses = _start_reuses(starts, prompts, specs, base_rows, per_group, lm.device) if plans is not None else {}
        for i in range(starts[0], len(layers)):
            call = recorded.calls[i]
            args, kwargs = select(call.args), select(call.kwargs)
            if base_rows and i > 0 and call.hidden is not None:
                call.hidden.index_copy_(0, index[:base_rows], hidden[:base_rows])
            done = 0 if hidden is None else hidden.shape[0]
            rows = bisect.bisect_right(starts, i)
            if rows > done:  # rows that start at this layer join the batch
                joining = call.hidden.index_select(0, index[done:rows])
                hidden = joining if hidden is None else torch.cat([hidden, joining])
            reuse = reuses.get(i)  # rows [reuse.split, rows) join here, reusing their base rows
            plan = LayerPlan(last_query_only=plans is not None and i == last_layer, reuse=reuse)
            if plans is not None:
                plans[attentions[i]] = plan
            selected = {id(t) for t in select.done.values()}
            with projections_reused(attentions[i], reuse):
                out = layers[i](hidden, *_prefix(args, selected, rows), **_prefix(kwargs, selected, rows))
            hidden = out[0] if isinstance(out, tuple) else out
            layer_tokens += rows * recorded.width
            flops += layer_flops(
                cost,
                i,
                rows=rows,
                tokens=recorded.width,
                copied_rows=0 if reuse is None else rows - reuse.split,
                attention_heads=None if reuse is None else reuse.split * cost.num_heads + reuse.fresh_heads,
                queries=1 if plan.last_query_only else None,
                tail_positions=1 if i == last_layer else None,
            )
        normed = lm.final_norm(hidden[:, -1:, :])
        logprobs = head_logits(lm, normed)[:, -1, :].float().log_softmax(dim=-1).cpu() if want_logprobs else None
        last = normed[:, -1, :].float().cpu() if want_hidden else None
    flops += head_flops(cost, rows=hidden.shape[0])
    return Resumed(logprobs, last, layer_tokens, flops)


class FastEngine:
    """One Forward call of the fast engine (see the module docstring).

    Blocks are consecutive prompts (the unit streamed back, sized by the output buffer); inside a
    block, prompts are sorted by length into buckets of about `bucket_prompts`, one recording call
    and one batch of rows (or more, if they do not fit) each, so that padding stays small.
    """

    def __init__(
        self,
        lm: LoadedModel,
        prompt_ids: Sequence[Sequence[int]],
        specs: Sequence[AblationSpec],
        *,
        want_logprobs: bool,
        want_hidden: bool,
        max_batch_rows: int,
        memory_budget_gib: float,
        stats: ForwardStats,
        cost: ModelCost | None = None,
        output_buffers: HostBuffers | None = None,
    ) -> None:
        self.lm = lm
        self.output_buffers = output_buffers
        self.prompt_ids = prompt_ids
        self.specs = specs
        self.want_logprobs = want_logprobs
        self.want_hidden = want_hidden
        self.max_batch_rows = max_batch_rows
        self.stats = stats
        self.cost = cost or model_cost(lm)
        self.budget = budget_bytes(memory_budget_gib, lm.device)
        self.oom_rows = 0  # after an out-of-memory split of a batch: the rows that worked
        self.oom_prompts = 0  # after one of a block (a bucket's recording pass): the prompts that worked
        self.bases, self.plan = assign_bases(specs)
        self.groups: dict[tuple[int, int], list[int]] = {}  # (base, layer) -> specs resumed there
        for m, (base, start) in enumerate(self.plan):
            if start is not None:
                self.groups.setdefault((base, start), []).append(m)
        self.used_bases = sorted({base for base, _ in self.plan})
        self.resumed_specs = max(
            1,
            max((sum(len(g) for (b, _), g in self.groups.items() if b == base) for base in self.used_bases), default=1),
        )

    def batch_rows(self, tokens: int) -> int:
        rows = plan_batch_rows(self.budget, activation_bytes_per_row(self.cost, tokens), self.max_batch_rows)
        return min(rows, self.oom_rows) if self.oom_rows else rows

    def block_prompts(self) -> int:
        """Prompts per block: the block's results fit the output buffer."""
        cost = self.cost
        widths = (cost.vocab_size if self.want_logprobs else 0) + (cost.hidden_size if self.want_hidden else 0)
        by_output = OUTPUT_BUFFER_BYTES // max(1, len(self.specs) * widths * 4)
        return max(1, min(by_output, len(self.prompt_ids)))

    def bucket_prompts(self, tokens: int) -> int:
        """Prompts per bucket: enough that its rows (a base row per prompt and the resumed rows of
        every start layer together: each layer runs once on all the rows that need it) fill a batch
        (up to MIN_EFFICIENT_ROWS), and no more than one batch of base rows. Fewer prompts per
        bucket means less padding (prompts are sorted by length)."""
        rows = self.batch_rows(tokens)
        target = MIN_EFFICIENT_ROWS.get(self.lm.device.type, MIN_EFFICIENT_ROWS["cpu"])
        prompts = max(1, min(rows, math.ceil(min(rows, target) / (self.resumed_specs + 1))))
        return min(prompts, self.oom_prompts) if self.oom_prompts else prompts

    def buckets(self, block: Sequence[int]) -> list[list[int]]:
        """Positions in `block`, sorted by prompt length, cut into buckets (a short tail joins the last)."""
        order = sorted(range(len(block)), key=lambda b: len(self.prompt_ids[block[b]]))
        size = self.bucket_prompts(max(len(self.prompt_ids[n]) for n in block))
        cuts = [order[i : i + size] for i in range(0, len(order), size)]
        if len(cuts) > 1 and len(cuts[-1]) < size / 2:
            cuts[-2].extend(cuts.pop())
        return cuts

    def _shrunk(self, size: int) -> None:
        self.oom_rows = size

    def _block_shrunk(self, prompts: int) -> None:
        # A block fails outside the row batches (they split themselves): in the pass that records a
        # bucket's layer inputs, whose memory grows with its prompts. Fewer prompts per bucket, then;
        # the row batches keep their size.
        self.oom_prompts = prompts

    def rows(self) -> Iterator[BatchResult]:
        m_count = len(self.specs)
        prompts = list(range(len(self.prompt_ids)))
        for block, result in run_in_batches(
            prompts, self.block_prompts(), self.run_block, self.stats, self.lm.device, on_split=self._block_shrunk
        ):
            logprobs, hidden = result
            yield BatchResult(range(block[0] * m_count, (block[-1] + 1) * m_count), logprobs, hidden)

    def run_block(self, block: Sequence[int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        m_count, cost = len(self.specs), self.cost
        block_rows = len(block) * m_count
        out_lp = self.output_block(block_rows, cost.vocab_size) if self.want_logprobs else None
        out_hid = self.output_block(block_rows, cost.hidden_size) if self.want_hidden else None

        def store(rows: list[int], logprobs: torch.Tensor | None, hidden: torch.Tensor | None) -> None:
            if out_lp is not None:
                out_lp[rows] = logprobs
            if out_hid is not None:
                out_hid[rows] = hidden

        for bucket in self.buckets(block):
            self.run_bucket([block[b] for b in bucket], [b * m_count for b in bucket], store)
        self.stats.rows += block_rows
        return out_lp, out_hid

    def output_block(self, rows: int, width: int) -> torch.Tensor:
        return self.output_buffers.take(rows, width) if self.output_buffers else torch.empty(rows, width)

    def run_bucket(self, prompts: list[int], bases: list[int], store) -> None:
        """Per base: its rows and every row resumed from it; results go to
        store(rows, logprobs, hidden) at row bases[i] + m of the block buffer."""
        for base in self.used_bases:
            self.run_base(base, prompts, bases, store)

    def run_base(self, base: int, prompts: list[int], offsets: list[int], store) -> None:
        lm, cost, stats = self.lm, self.cost, self.stats
        spec = self.bases[base]
        with stats.timed(lm.device):
            recorded = record_layer_args(lm, [self.prompt_ids[n] for n in prompts])
        stats.forwards += 1
        width = recorded.width
        own = [m for m, (b, start) in enumerate(self.plan) if b == base and start is None]  # the base's own rows
        starts = sorted(layer for b, layer in self.groups if b == base)
        # The inputs resumed rows start from: layer 0's are the embeddings; those of later start
        # layers are written by the base rows as they pass (resume), before any row needs them.
        shape = recorded.calls[0].hidden.shape
        for layer in starts:
            if layer > 0:
                recorded.calls[layer].hidden = recorded.calls[0].hidden.new_empty(shape)
        # Work items (prompt, spec or None for the prompt's base row, start layer): every base row
        # first (whenever one is wanted or copied from), then the resumed rows sorted by start
        # layer, so that each batch runs each layer once (resume) and no row comes before its base.
        with_base = bool(own) or any(layer > 0 for layer in starts)
        items: list[tuple[int, int | None, int]] = [(b, None, 0) for b in range(len(prompts))] if with_base else []
        items += [(b, m, layer) for layer in starts for b in range(len(prompts)) for m in self.groups[(base, layer)]]

        def run(batch: Sequence[tuple[int, int | None, int]]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            with stats.timed(lm.device):
                result = resume(
                    lm,
                    recorded,
                    [layer for _, _, layer in batch],
                    [b for b, _, _ in batch],
                    [spec if m is None else self.specs[m] for _, m, _ in batch],
                    base_rows=sum(1 for _, m, _ in batch if m is None),
                    want_logprobs=self.want_logprobs,
                    want_hidden=self.want_hidden,
                    cost=cost,
                )
            stats.layer_tokens += result.layer_tokens
            stats.flops += result.flops
            stats.forwards += 1
            stats.max_batch_rows = max(stats.max_batch_rows, len(batch))
            return result.logprobs, result.hidden

        for batch, (logprobs, hidden) in run_in_batches(
            items, self.batch_rows(width), run, stats, lm.device, self._shrunk
        ):
            # A base row's result is every own spec's row of its prompt; a resumed row's, its spec's.
            targets, sources = [], []
            for i, (b, m, _) in enumerate(batch):
                for spec_index in own if m is None else (m,):
                    targets.append(offsets[b] + spec_index)
                    sources.append(i)
            store(
                targets,
                None if logprobs is None else logprobs[sources],
                None if hidden is None else hidden[sources],
            )


def fast_rows(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    specs: Sequence[AblationSpec],
    *,
    want_logprobs: bool,
    want_hidden: bool,
    max_batch_rows: int = 0,
    memory_budget_gib: float = 0.0,
    stats: ForwardStats | None = None,
    output_buffers: HostBuffers | None = None,
) -> Iterator[BatchResult]:
    """Every (prompt, spec) row, block by block, in row order (see the module docstring).

    With `output_buffers`, each block's tensors are taken from there (the caller gives them back
    when it has read them; host_buffers.py); else they are new.

    Attention kernels whose masks are not plain tensors (flash, flex) cannot be replayed by row;
    there every row runs the whole model (forward.forward_rows), still many specs per forward.
    """
    stats = stats if stats is not None else ForwardStats()
    if not reuse_supported(lm):
        width = max(len(ids) for ids in prompt_ids)
        per_row = activation_bytes_per_row(model_cost(lm), width)
        rows = plan_batch_rows(budget_bytes(memory_budget_gib, lm.device), per_row, max_batch_rows)
        yield from forward_rows(
            lm,
            prompt_ids,
            specs,
            want_logprobs=want_logprobs,
            want_hidden=want_hidden,
            max_batch_rows=rows,
            stats=stats,
        )
        return
    engine = FastEngine(
        lm,
        prompt_ids,
        specs,
        want_logprobs=want_logprobs,
        want_hidden=want_hidden,
        max_batch_rows=max_batch_rows,
        memory_budget_gib=memory_budget_gib,
        stats=stats,
        output_buffers=output_buffers,
    )
    yield from engine.rows()
