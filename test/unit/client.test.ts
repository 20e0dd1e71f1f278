/** The sidecar client's stream reassembly and error mapping, without a server. */
import {status} from '@grpc/grpc-js'
import {describe, expect, it} from 'vitest'

import {DType, type Tensor, TensorAssembler, decodeLittleEndian, toSidecarError} from '../../src/sidecar/client.js'
import {TensorBuffers} from '../../src/sidecar/tensor-buffers.js'
import {parseListening, serveArgs} from '../../src/sidecar/process.js'

const header = (shape: number[], byteLength = shape.reduce((a, b) => a * b, 1) * 4) => ({
  header: {tensors: [{name: 'logprobs', dtype: DType.DTYPE_FLOAT32, shape, byteLength}], promptTokens: [3, 5]},
})
const chunk = (offset: number, data: Buffer, name = 'logprobs') => ({chunk: {name, offset, data}})

function le32(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => b.writeFloatLE(v, i * 4))
  return b
}

describe('TensorAssembler', () => {
  it('reassembles chunks in any order into a little-endian Float32Array', () => {
    const values = [0.5, -1.25, 3, -0.0625, 7, 8]
    const bytes = le32(values)
    const a = new TensorAssembler()
    a.add(header([2, 1, 3]))
    a.add(chunk(16, bytes.subarray(16)))
    a.add(chunk(0, bytes.subarray(0, 16)))
    const result = a.finish()
    expect(result.promptTokens).toEqual([3, 5])
    const t = result.tensors.get('logprobs')!
    expect(t.shape).toEqual([2, 1, 3])
    expect(t.data).toBeInstanceOf(Float32Array)
    expect([...t.data]).toEqual(values)
  })

  it('checks the header against the shape', () => {
    expect(() => new TensorAssembler().add(header([2, 3], 20))).toThrow('byte_length 20 does not match shape [2, 3] x 4 bytes')
  })

  it('rejects chunks before the header, of unknown tensors, or past the end', () => {
    expect(() => new TensorAssembler().add(chunk(0, le32([1])))).toThrow('a chunk before the header')
    const a = new TensorAssembler()
    a.add(header([2]))
    expect(() => a.add(chunk(0, le32([1]), 'hidden'))).toThrow('a chunk of undeclared tensor "hidden"')
    expect(() => a.add(chunk(4, le32([1, 2])))).toThrow('chunk [4, 12) past its byte_length 8')
  })

  it('detects missing and overlapping bytes at the end', () => {
    const missing = new TensorAssembler()
    missing.add(header([3]))
    missing.add(chunk(0, le32([1])))
    missing.add(chunk(8, le32([1])))
    expect(() => missing.finish()).toThrow('missing bytes at offset 4')
    const overlap = new TensorAssembler()
    overlap.add(header([2]))
    overlap.add(chunk(0, le32([1, 2])))
    overlap.add(chunk(4, le32([2])))
    expect(() => overlap.finish()).toThrow('overlapping chunks')
    expect(() => new TensorAssembler().finish()).toThrow('without a header')
  })

  it('decodes float64 too', () => {
    const b = Buffer.alloc(16)
    b.writeDoubleLE(Math.PI, 0)
    b.writeDoubleLE(-2, 8)
    expect([...decodeLittleEndian(new Uint8Array(b), DType.DTYPE_FLOAT64)]).toEqual([Math.PI, -2])
    expect(() => decodeLittleEndian(new Uint8Array(4), DType.DTYPE_BFLOAT16)).toThrow('unsupported dtype DTYPE_BFLOAT16')
  })
})

describe('errors', () => {
  it('name the call, the endpoint, the status code and the server\'s message', () => {
    const e = toSidecarError({code: status.INVALID_ARGUMENT, details: 'specs[3].heads[0]: layer 40 out of range (model has 32 layers)'}, 'Forward', '127.0.0.1:5')
    expect(e.message).toBe('Forward on 127.0.0.1:5: INVALID_ARGUMENT: specs[3].heads[0]: layer 40 out of range (model has 32 layers)')
    expect(e.code).toBe('INVALID_ARGUMENT')
    expect(toSidecarError({code: status.UNAVAILABLE, details: 'No connection established'}, 'Describe', 'h:1').message).toContain(
      'UNAVAILABLE: No connection established (is a sidecar running at h:1?)',
    )
  })
})

describe('sidecar process contract', () => {
  it('recognises only the listening line', () => {
    expect(parseListening('{"event":"listening","host":"127.0.0.1","port":4321,"pid":9,"model":"/m"}')).toEqual({
      event: 'listening',
      host: '127.0.0.1',
      port: 4321,
      pid: 9,
      model: '/m',
    })
    expect(parseListening('loading weights...')).toBeUndefined()
    expect(parseListening('{"event":"listening","port":0}')).toBeUndefined()
    expect(parseListening('{not json')).toBeUndefined()
  })

  it('builds the serve command line', () => {
    expect(serveArgs({model: '/m', device: 'cpu', dtype: 'float32'})).toEqual([
      '-m', 'sahara_sidecar', 'serve', '--model', '/m', '--host', '127.0.0.1', '--port', '0', '--device', 'cpu', '--dtype', 'float32',
    ])
  })
})

describe('TensorBuffers', () => {
  const tensorOf = (bytes: Uint8Array): Tensor => ({name: 't', dtype: DType.DTYPE_FLOAT32, shape: [bytes.byteLength / 4], data: new Float32Array(bytes.buffer, 0, bytes.byteLength / 4)})

  it('lends shared memory and takes back only what it lent, once', () => {
    const pool = new TensorBuffers(1000)
    const first = pool.take(400)
    expect(first.buffer).toBeInstanceOf(SharedArrayBuffer)
    const lent = tensorOf(first)
    pool.lend(lent)
    pool.give(lent)
    expect(pool.heldBytes).toBe(400)
    const again = pool.take(240) // smaller, at least half: the same memory, a view of the asked length
    expect(again.buffer).toBe(first.buffer)
    expect(again.byteLength).toBe(240)
    expect(pool.take(240).buffer).not.toBe(first.buffer) // lent out: not handed out twice
    pool.give(lent) // a second give of the same tensor: ignored
    expect(pool.heldBytes).toBe(0)
    pool.give(tensorOf(new Uint8Array(new SharedArrayBuffer(400)))) // never lent: ignored
    expect(pool.heldBytes).toBe(0)
  })

  it('skips free buffers too small or over twice the size, and keeps at most its cap', () => {
    const pool = new TensorBuffers(1000)
    const giveBack = (bytes: Uint8Array) => {
      const tensor = tensorOf(bytes)
      pool.lend(tensor)
      pool.give(tensor)
    }

    const big = pool.take(800)
    giveBack(big)
    expect(pool.take(300).buffer).not.toBe(big.buffer) // 800 > 2 x 300
    expect(pool.take(900).buffer).not.toBe(big.buffer)
    giveBack(pool.take(350)) // a new buffer (800 > 2 x 350)
    expect(pool.heldBytes).toBe(350) // 800 + 350 over the cap of 1000: the oldest dropped
  })
})

describe('TensorAssembler with recycled buffers', () => {
  it('fills a recycled buffer completely and still finds missing bytes in it', () => {
    const pool = new TensorBuffers()
    const first = new TensorAssembler(pool)
    first.add(header([2, 3]))
    first.add(chunk(0, le32([1, 2, 3, 4, 5, 6])))
    const one = first.finish()
    const stale = one.tensors.get('logprobs')!.data.buffer
    for (const tensor of one.tensors.values()) pool.give(tensor)
    const second = new TensorAssembler(pool)
    second.add(header([2, 3]))
    second.add(chunk(0, le32([7, 8, 9, 10, 11, 12])))
    const two = second.finish().tensors.get('logprobs')!
    expect(two.data.buffer).toBe(stale)
    expect([...two.data]).toEqual([7, 8, 9, 10, 11, 12])
    pool.give(two)
    const partial = new TensorAssembler(pool)
    partial.add(header([2, 3]))
    partial.add(chunk(0, le32([1, 2, 3])))
    expect(() => partial.finish()).toThrow('got 12 of 24 bytes') // the stale rest does not count
  })
})
