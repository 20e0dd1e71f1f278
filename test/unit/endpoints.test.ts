import {describe, expect, it} from 'vitest'

import {EndpointError, isHostFailure, parseEndpoints, resolveEndpoints} from '../../src/orchestration/endpoints.js'
import {SidecarError} from '../../src/sidecar/client.js'

describe('endpoints', () => {
  it('parses host:port, [v6]:port and dns:///name:port, comma-separated or listed', () => {
    expect(parseEndpoints(['a:1,127.0.0.1:50051', '[::1]:7', 'dns:///sahara.default.svc:50051'])).toEqual([
      {kind: 'address', address: 'a:1'},
      {kind: 'address', address: '127.0.0.1:50051'},
      {kind: 'address', address: '[::1]:7'},
      {kind: 'dns', name: 'sahara.default.svc', port: 50_051, text: 'dns:///sahara.default.svc:50051'},
    ])
  })

  it('says what is wrong with a bad one', () => {
    expect(() => parseEndpoints(['a:1,,b:2'])).toThrow('an empty endpoint')
    expect(() => parseEndpoints(['host'])).toThrow('endpoint "host": expected host:port, [ipv6]:port or dns:///name:port')
    expect(() => parseEndpoints(['a:70000'])).toThrow('port 70000 is not in 1..65535')
    expect(() => parseEndpoints(['a:1', 'a:1'])).toThrow('endpoint a:1 is given twice')
    expect(() => parseEndpoints([])).toThrow(EndpointError)
  })

  it('resolves a DNS name to every address it has', async () => {
    expect(await resolveEndpoints(parseEndpoints(['dns:///localhost:9', 'x:1']))).toContainEqual({address: 'x:1'})
    const local = await resolveEndpoints(parseEndpoints(['dns:///localhost:9']))
    expect(local.length).toBeGreaterThan(0)
    expect(local.every((a) => a.address.endsWith(':9') && a.dnsName === 'localhost')).toBe(true) // the name checks the TLS certificate
    await expect(resolveEndpoints(parseEndpoints(['dns:///no-such-host.invalid:1']))).rejects.toThrow('cannot resolve no-such-host.invalid')
  })

  it('re-queues only what is the host\'s fault', () => {
    expect(isHostFailure(new SidecarError('Forward on a:1: UNAVAILABLE: connect ECONNREFUSED', 'UNAVAILABLE'))).toBe(true)
    expect(isHostFailure(new SidecarError('Forward on a:1: DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED'))).toBe(true)
    expect(isHostFailure(new SidecarError('Forward on a:1: INTERNAL: Received RST_STREAM with code 2', 'INTERNAL'))).toBe(true)
    expect(isHostFailure(new SidecarError('Forward on a:1: INVALID_ARGUMENT: specs[0]', 'INVALID_ARGUMENT'))).toBe(false)
    expect(isHostFailure(new SidecarError('Forward on a:1: INTERNAL: KeyError', 'INTERNAL'))).toBe(false)
    expect(isHostFailure(new Error('TypeError'))).toBe(false)
  })
})
