/**
 * A typed client for one sidecar (sahara.v1.AblationService + grpc.health.v1), over the
 * ts-proto stubs generated from proto/. It hides the wire details the rest of the CLI should not
 * care about: Forward's and Attribute's streamed TensorChunks are reassembled into typed arrays by their header
 * (byte lengths and offsets checked, little-endian; the trailing ForwardStats kept), Generate's stream is collected, every call
 * has a deadline, and gRPC errors become SidecarErrors that say the status code name and the
 * server's message.
 */
import {type ClientReadableStream, Metadata, type ServiceError, status as GrpcStatus} from '@grpc/grpc-js'
import {endianness} from 'node:os'

import {type HealthCheckResponse, HealthCheckResponse_ServingStatus, HealthClient} from '../gen/grpc/health/v1/health.js'
import {
  type AblationSpec,
  AblationServiceClient,
  type AttributeRequest,
  type CountTokensRequest,
  type CountTokensResponse,
  type DescribeResponse,
  DType,
  Engine,
  type ForwardStats,
  type ForwardRequest,
  type ForwardResponse,
  type GenerateRequest,
  type GenerateResponse,
  type MeasurePeakRequest,
  type MeasurePeakResponse,
  type TensorHeader,
} from '../gen/sahara/v1/sahara.js'
import {type SidecarCredentials, grpcCredentials} from './credentials.js'
import {type TensorBuffers, sharedTensorBuffers} from './tensor-buffers.js'

export {AblationMethod, DType, Engine, PromptTemplate} from '../gen/sahara/v1/sahara.js'
export type {
  AblationSpec,
  AttributeRequest,
  DescribeResponse,
  ForwardRequest,
  ForwardStats,
  GenerateRequest,
  GenerateResponse,
  MeasurePeakResponse,
} from '../gen/sahara/v1/sahara.js'

export class SidecarError extends Error {
  override name = 'SidecarError'
  constructor(
    message: string,
    /** The gRPC status code name (e.g. INVALID_ARGUMENT), or PROTOCOL for a malformed stream. */
    readonly code: string,
  ) {
    super(message)
  }
}

export interface Tensor {
  name: string
  dtype: DType
  shape: number[]
  data: Float32Array | Float64Array
}

export interface ForwardResult {
  tensors: Map<string, Tensor>
  /** Tokens per prompt after templating. */
  promptTokens: number[]
  /** What the sidecar did (sent last; absent from sidecars that predate it). */
  stats?: ForwardStats
}

/** The result's tensor `name`, of shape `expected`, or an error that `where` begins ("Forward on host:port"). */
export function shapedTensor(result: ForwardResult, name: string, expected: number[], where: string): Tensor {
  const tensor = result.tensors.get(name)
  if (!tensor || tensor.shape.join(',') !== expected.join(',')) {
    throw new Error(`${where}: expected tensor ${name} of shape [${expected.join(', ')}], got ${tensor ? `[${tensor.shape.join(', ')}]` : 'none'}`)
  }

  return tensor
}

export interface ClientOptions {
  /** Deadline for Describe and health checks (ms). */
  unaryDeadlineMs?: number
  /** Deadline for one whole Forward or Generate stream (ms). */
  streamDeadlineMs?: number
  /** TLS and the bearer token (src/sidecar/credentials.ts); plaintext without a token when absent. */
  credentials?: SidecarCredentials
  /** Where tensors are assembled (recycle); by default one pool for every client of the process. */
  buffers?: TensorBuffers
}

const ITEM_SIZE: Partial<Record<DType, number>> = {[DType.DTYPE_FLOAT32]: 4, [DType.DTYPE_FLOAT64]: 8}

function statusName(code: number): string {
  return (GrpcStatus as unknown as Record<number, string>)[code] ?? `status ${code}`
}

/** A readable message for a failed call: `<call> on <endpoint>: <CODE>: <server's message>`. */
export function toSidecarError(error: unknown, call: string, endpoint: string): SidecarError {
  if (error instanceof SidecarError) return error
  const e = error as Partial<ServiceError>
  if (typeof e?.code === 'number') {
    const name = statusName(e.code)
    let detail = e.details || e.message || ''
    if (e.code === GrpcStatus.UNAVAILABLE) detail += ` (is a sidecar running at ${endpoint}?)`
    if (e.code === GrpcStatus.DEADLINE_EXCEEDED) detail += ' (the call took longer than its deadline)'
    return new SidecarError(`${call} on ${endpoint}: ${name}: ${detail}`, name)
  }

  return new SidecarError(`${call} on ${endpoint}: ${(error as Error)?.message ?? String(error)}`, 'UNKNOWN')
}

/** Reassemble one Forward stream (header first, then chunks) into typed arrays. */
export class TensorAssembler {
  /** `buffers`: where tensors' memory comes from (recycled across requests, tensor-buffers.ts). */
  constructor(private readonly buffers: TensorBuffers = sharedTensorBuffers) {}

  private header: {tensors: TensorHeader[]; promptTokens: number[]} | undefined
  private stats: ForwardStats | undefined
  private readonly tensorBytes = new Map<string, {header: TensorHeader; bytes: Uint8Array; spans: [number, number][]}>()

  add(message: ForwardResponse): void {
    if (message.header) {
      if (this.header) throw new SidecarError('Forward stream: a second header', 'PROTOCOL')
      this.header = {tensors: message.header.tensors, promptTokens: message.header.promptTokens}
      for (const t of message.header.tensors) {
        const item = ITEM_SIZE[t.dtype]
        if (item === undefined) throw new SidecarError(`Forward stream: tensor ${t.name}: unsupported dtype ${DType[t.dtype] ?? t.dtype}`, 'PROTOCOL')
        const count = t.shape.reduce((a, b) => a * b, 1)
        if (t.byteLength !== count * item) {
          throw new SidecarError(
            `Forward stream: tensor ${t.name}: byte_length ${t.byteLength} does not match shape [${t.shape.join(', ')}] x ${item} bytes`,
            'PROTOCOL',
          )
        }

        if (this.tensorBytes.has(t.name)) throw new SidecarError(`Forward stream: tensor ${t.name} declared twice`, 'PROTOCOL')
        // Shared memory: KL worker threads read a tensor where it lies (src/orchestration/kl-threads.ts)
        this.tensorBytes.set(t.name, {header: t, bytes: this.buffers.take(t.byteLength), spans: []})
      }

      return
    }

    if (message.stats) {
      if (!this.header) throw new SidecarError('Forward stream: stats before the header', 'PROTOCOL')
      this.stats = message.stats
      return
    }

    const chunk = message.chunk
    if (!chunk) throw new SidecarError('Forward stream: a message with neither header, chunk nor stats', 'PROTOCOL')
    if (!this.header) throw new SidecarError('Forward stream: a chunk before the header', 'PROTOCOL')
    const target = this.tensorBytes.get(chunk.name)
    if (!target) throw new SidecarError(`Forward stream: a chunk of undeclared tensor ${JSON.stringify(chunk.name)}`, 'PROTOCOL')
    const end = chunk.offset + chunk.data.length
    if (end > target.header.byteLength) {
      throw new SidecarError(
        `Forward stream: tensor ${chunk.name}: chunk [${chunk.offset}, ${end}) past its byte_length ${target.header.byteLength}`,
        'PROTOCOL',
      )
    }

    target.bytes.set(chunk.data, chunk.offset)
    target.spans.push([chunk.offset, end])
  }

  finish(): ForwardResult {
    if (!this.header) throw new SidecarError('Forward stream ended without a header', 'PROTOCOL')
    const tensors = new Map<string, Tensor>()
    for (const [name, {header, bytes, spans}] of this.tensorBytes) {
      spans.sort((a, b) => a[0] - b[0])
      let covered = 0
      for (const [start, end] of spans) {
        if (start !== covered) {
          throw new SidecarError(
            `Forward stream: tensor ${name}: ${start < covered ? 'overlapping chunks' : 'missing bytes'} at offset ${Math.min(start, covered)}`,
            'PROTOCOL',
          )
        }

        covered = end
      }

      if (covered !== header.byteLength) {
        throw new SidecarError(`Forward stream: tensor ${name}: got ${covered} of ${header.byteLength} bytes`, 'PROTOCOL')
      }

      const tensor = {name, dtype: header.dtype, shape: header.shape, data: decodeLittleEndian(bytes, header.dtype)}
      this.buffers.lend(tensor)
      tensors.set(name, tensor)
    }

    return {tensors, promptTokens: this.header.promptTokens, ...(this.stats ? {stats: this.stats} : {})}
  }
}

/** Little-endian bytes (freshly allocated, so aligned) as a typed array; byte-swapped on big-endian hosts. */
export function decodeLittleEndian(bytes: Uint8Array, dtype: DType): Float32Array | Float64Array {
  const item = ITEM_SIZE[dtype]
  if (item === undefined) throw new SidecarError(`unsupported dtype ${DType[dtype] ?? dtype}`, 'PROTOCOL')
  if (endianness() === 'LE' && bytes.byteOffset % item === 0) {
    return item === 4
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
      : new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8)
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = bytes.byteLength / item
  const out = item === 4 ? new Float32Array(n) : new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = item === 4 ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true)
  return out
}

/** Which sidecar served a run, as recorded in every job summary. */
export interface SidecarInfo {
  endpoint: string
  device: string
  dtype: string
  sidecar_version: string
  torch_version: string
  transformers_version: string
}

/** "float32", "bfloat16", ... for a DType. */
export function dtypeName(dtype: DType): string {
  return (DType[dtype] ?? String(dtype)).replace('DTYPE_', '').toLowerCase()
}

export function sidecarInfo(endpoint: string, facts: DescribeResponse): SidecarInfo {
  return {
    endpoint,
    device: facts.device,
    dtype: dtypeName(facts.dtype),
    sidecar_version: facts.sidecarVersion,
    torch_version: facts.torchVersion,
    transformers_version: facts.transformersVersion,
  }
}

export class SidecarClient {
  private readonly service: AblationServiceClient
  private readonly health: HealthClient
  private readonly unaryDeadlineMs: number
  private readonly streamDeadlineMs: number
  private readonly buffers: TensorBuffers

  constructor(
    readonly endpoint: string,
    options: ClientOptions = {},
  ) {
    const {channel, options: secured} = grpcCredentials(options.credentials)
    // reconnect within seconds once a restarted sidecar listens again (grpc-js backs off up to 120 s by default)
    const reconnect = {'grpc.initial_reconnect_backoff_ms': 500, 'grpc.max_reconnect_backoff_ms': 2000}
    // Forward streams carry MBs of log-probs: a 64 MiB HTTP/2 window instead of grpc-js's 64 KiB
    // (measured: 4.5 MB streamed in 17-20 ms instead of 30-77 ms on loopback).
    const window = {'grpc-node.flow_control_window': 64 * 1024 * 1024}
    const channelOptions = {'grpc.max_receive_message_length': 64 * 1024 * 1024, ...window, ...reconnect, ...secured}
    this.service = new AblationServiceClient(endpoint, channel, channelOptions)
    this.health = new HealthClient(endpoint, channel, channelOptions)
    this.unaryDeadlineMs = options.unaryDeadlineMs ?? 60_000
    this.streamDeadlineMs = options.streamDeadlineMs ?? 6 * 60 * 60_000
    // Shared, so that a run over many sidecars keeps one bounded set of free buffers, not one per host.
    this.buffers = options.buffers ?? sharedTensorBuffers
  }

  private deadline(ms: number): Date {
    return new Date(Date.now() + ms)
  }

  /** One unary call as a promise; its error named after `call` and this endpoint. */
  private unary<T>(call: string, start: (done: (error: ServiceError | null, response: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      start((error, response) => {
        if (error) reject(toSidecarError(error, call, this.endpoint))
        else resolve(response)
      })
    })
  }

  /** SERVING / NOT_SERVING / ... for the whole server (service "") or a named service. */
  async healthCheck(service = ''): Promise<string> {
    const response = await this.unary<HealthCheckResponse>('Health.Check', (done) =>
      this.health.check({service}, new Metadata(), {deadline: this.deadline(this.unaryDeadlineMs)}, done),
    )
    return HealthCheckResponse_ServingStatus[response.status] ?? String(response.status)
  }

  /** Wait until the channel connects, then until health says SERVING. */
  async waitUntilServing(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs
    let last = ''
    while (Date.now() < until) {
      try {
        last = await this.healthCheck()
        if (last === 'SERVING') return
      } catch (error) {
        last = (error as Error).message
      }

      await new Promise((r) => setTimeout(r, 200))
    }

    throw new SidecarError(`sidecar at ${this.endpoint} not serving after ${timeoutMs} ms (last: ${last})`, 'DEADLINE_EXCEEDED')
  }

  describe(): Promise<DescribeResponse> {
    return this.unary('Describe', (done) => this.service.describe({}, new Metadata(), {deadline: this.deadline(this.unaryDeadlineMs)}, done))
  }

  /** One Forward call, its streamed tensors reassembled. */
  forward(request: Partial<ForwardRequest> & {prompts: string[]; specs: AblationSpec[]}): Promise<ForwardResult> {
    const full: ForwardRequest = {
      template: 0,
      returnLogprobs: false,
      returnHidden: false,
      maxBatchRows: 0,
      engine: Engine.ENGINE_UNSPECIFIED,
      memoryBudgetGib: 0,
      logprobSupport: 0,
      ...request,
    }
    return this.collectTensors('Forward', this.service.forward(full, {deadline: this.deadline(this.streamDeadlineMs)}))
  }

  /**
   * The caller no longer reads `result`'s tensors: later calls may write theirs into the same
   * memory (tensor-buffers.ts: fresh pages cost as much as the rest of receiving them).
   */
  recycle(result: ForwardResult): void {
    for (const tensor of result.tensors.values()) this.buffers.give(tensor)
  }

  /** One Attribute call: tensor "attribution", float32 [N, L, H], and the stats. */
  attribute(request: Partial<AttributeRequest> & {prompts: string[]}): Promise<ForwardResult> {
    const full: AttributeRequest = {template: 0, method: 0, eps: 0, maxBatchRows: 0, ...request}
    return this.collectTensors('Attribute', this.service.attribute(full, {deadline: this.deadline(this.streamDeadlineMs)}))
  }

  /** The device's dense-matmul throughput in the model's dtype (takes about min_seconds). */
  measurePeak(request: Partial<MeasurePeakRequest> = {}): Promise<MeasurePeakResponse> {
    const full: MeasurePeakRequest = {size: 0, minSeconds: 0, ...request}
    const deadline = this.deadline(this.unaryDeadlineMs + 1000 * (full.minSeconds || 1) * 4)
    return this.unary('MeasurePeak', (done) => this.service.measurePeak(full, new Metadata(), {deadline}, done))
  }

  /** Tokens per prompt after templating (as Forward's header reports them); the model does not run. */
  async countTokens(request: Partial<CountTokensRequest> & {prompts: string[]}): Promise<number[]> {
    const full: CountTokensRequest = {template: 0, ...request}
    const response = await this.unary<CountTokensResponse>('CountTokens', (done) =>
      this.service.countTokens(full, new Metadata(), {deadline: this.deadline(this.unaryDeadlineMs)}, done),
    )
    return response.promptTokens
  }

  /** A header-chunks-stats stream (Forward, Attribute) reassembled. */
  private collectTensors(call: string, stream: ClientReadableStream<ForwardResponse>): Promise<ForwardResult> {
    return new Promise((resolve, reject) => {
      const assembler = new TensorAssembler(this.buffers)
      let failed = false
      stream.on('data', (message: ForwardResponse) => {
        if (failed) return
        try {
          assembler.add(message)
        } catch (error) {
          failed = true
          stream.cancel()
          reject(toSidecarError(error, call, this.endpoint))
        }
      })
      stream.on('error', (error) => {
        if (!failed) {
          failed = true
          reject(toSidecarError(error, call, this.endpoint))
        }
      })
      stream.on('end', () => {
        if (failed) return
        try {
          resolve(assembler.finish())
        } catch (error) {
          reject(toSidecarError(error, call, this.endpoint))
        }
      })
    })
  }

  /** One Generate call; the replies in prompt order. */
  generate(request: Partial<GenerateRequest> & {prompts: string[]}): Promise<GenerateResponse[]> {
    const full: GenerateRequest = {template: 0, maxNewTokens: 0, maxBatchRows: 0, ...request}
    return new Promise((resolve, reject) => {
      const replies: (GenerateResponse | undefined)[] = Array.from({length: request.prompts.length})
      const stream = this.service.generate(full, {deadline: this.deadline(this.streamDeadlineMs)})
      let failed = false
      const fail = (error: unknown) => {
        if (failed) return
        failed = true
        stream.cancel()
        reject(toSidecarError(error, 'Generate', this.endpoint))
      }

      stream.on('data', (message: GenerateResponse) => {
        if (message.index >= replies.length) fail(new SidecarError(`Generate stream: reply for index ${message.index} of ${replies.length} prompts`, 'PROTOCOL'))
        else replies[message.index] = message
      })
      stream.on('error', fail)
      stream.on('end', () => {
        if (failed) return
        const missing = replies.findIndex((r) => r === undefined)
        if (missing >= 0) fail(new SidecarError(`Generate stream ended without a reply for prompt ${missing}`, 'PROTOCOL'))
        else resolve(replies as GenerateResponse[])
      })
    })
  }

  close(): void {
    this.service.close()
    this.health.close()
  }
}
