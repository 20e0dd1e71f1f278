/** The sidecar client's stream reassembly and error mapping, without a server. */
import {status} from '@grpc/grpc-js'
import {describe, expect, it} from 'vitest'

import {DType, TensorAssembler, decodeLittleEndian, toSidecarError} from '../../src/sidecar/client.js'
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
