import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {CredentialsError, grpcCredentials, loadCredentials, loadToken} from '../../src/sidecar/credentials.js'

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

describe('credentials', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sahara-credentials-'))
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text)
    return join(dir, name)
  }

  it('token: --token-file, else SAHARA_TOKEN_FILE, else SAHARA_TOKEN; none when unset', () => {
    expect(loadToken(undefined, {})).toBeUndefined()
    expect(loadToken(undefined, {SAHARA_TOKEN: ' abc \n'})).toBe('abc')
    const tokenFile = file('token', 'from-file\n')
    expect(loadToken(tokenFile, {SAHARA_TOKEN: 'env'})).toBe('from-file')
    expect(loadToken(undefined, {SAHARA_TOKEN_FILE: tokenFile, SAHARA_TOKEN: 'env'})).toBe('from-file')
  })

  it('token errors say what to fix', () => {
    expect(() => loadToken(undefined, {SAHARA_TOKEN: ' '})).toThrow(/SAHARA_TOKEN is set but empty/)
    expect(() => loadToken(file('empty', '\n'), {})).toThrow(/the token file is empty/)
    expect(() => loadToken(join(dir, 'missing'), {})).toThrow(/--token-file .*missing: cannot read the token \(ENOENT\)/)
    expect(() => loadToken(undefined, {SAHARA_TOKEN: 'two words'})).toThrow(CredentialsError)
  })

  it('TLS files: read and checked; a client certificate needs its key and a CA', () => {
    const ca = file('ca.crt', PEM)
    expect(loadCredentials({'tls-ca': ca}, {}).tls?.ca.toString()).toBe(PEM)
    expect(loadCredentials({}, {}).tls).toBeUndefined()
    expect(() => loadCredentials({'tls-ca': file('ca.txt', 'not pem')}, {})).toThrow(/not a PEM file/)
    expect(() => loadCredentials({'tls-cert': ca, 'tls-key': ca}, {})).toThrow(/need --tls-ca/)
    expect(() => loadCredentials({'tls-ca': ca, 'tls-cert': ca}, {})).toThrow(/both --tls-cert and --tls-key/)
    const full = loadCredentials({'tls-ca': ca, 'tls-cert': ca, 'tls-key': ca, 'tls-server-name': 'sidecar.example'}, {SAHARA_TOKEN: 'tok'})
    expect(full.token).toBe('tok')
    expect(full.tls?.serverName).toBe('sidecar.example')
  })

  it('plaintext with a token uses an interceptor; TLS composes call credentials and sets the name', () => {
    expect(grpcCredentials().options).toEqual({})
    expect(grpcCredentials({token: 't'}).options.interceptors).toHaveLength(1)
    expect(grpcCredentials({token: 't'}).channel._isSecure()).toBe(false)
    const tls = grpcCredentials({token: 't', tls: {ca: Buffer.from(PEM), serverName: 'n'}})
    expect(tls.channel._isSecure()).toBe(true)
    expect(tls.options).toEqual({'grpc.ssl_target_name_override': 'n'})
  })
})
