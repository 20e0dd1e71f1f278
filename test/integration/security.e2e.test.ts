/**
 * Secure remote sidecars end to end: real sidecar processes on loopback with TLS, mutual TLS and
 * a bearer token (certificates made here by sidecar/tests/certs.py with openssl, never committed),
 * reached through SidecarClient and through the built CLI (--endpoint, --tls-ca, SAHARA_TOKEN,
 * --token-file). Wrong or missing token -> UNAUTHENTICATED with the server's message; TLS works
 * with the test CA; plaintext to a TLS sidecar, or an untrusted CA, fails cleanly and quickly;
 * health needs no token (probes); a sidecar the CLI starts itself gets the token it sends.
 *
 * Skipped on a machine without the sidecar's environment, never in CI (see test/helpers.ts).
 */
import {type ResultPromise, execa} from 'execa'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {SidecarClient, SidecarError} from '../../src/sidecar/client.js'
import {type SidecarCredentials, loadCredentials} from '../../src/sidecar/credentials.js'
import {buildTinyModel, python, repoRoot, skipIntegration} from '../helpers.js'

const TOKEN = 'e2e-token-0123456789abcdef'

interface Sidecar {
  endpoint: string
  child: ResultPromise
}

/** A sidecar on 127.0.0.1 with the given environment (TLS paths, token); resolves when it listens. */
async function startSidecar(model: string, env: Record<string, string | undefined>): Promise<Sidecar> {
  const child = execa(python, ['-m', 'sahara_sidecar', 'serve', '--model', model, '--threads', '1'], {
    cwd: resolve(repoRoot, 'sidecar'),
    buffer: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'ignore',
    reject: false,
    env: {PYTHONUNBUFFERED: '1', SAHARA_TOKEN: undefined, SAHARA_TOKEN_FILE: undefined, ...env},
  })
  const port = await new Promise<number>((resolvePort, reject) => {
    let text = ''
    child.stdout?.on('data', (data: Buffer) => {
      text += data.toString('utf8')
      if (text.includes('\n')) resolvePort((JSON.parse(text.split('\n')[0]) as {port: number}).port)
    })
    void child.then((r) => reject(new Error(`sidecar exited before listening (${r.exitCode})`)))
  })
  return {endpoint: `127.0.0.1:${port}`, child}
}

async function stop(sidecar: Sidecar | undefined): Promise<void> {
  if (!sidecar || sidecar.child.exitCode !== null) return
  sidecar.child.kill('SIGTERM')
  await sidecar.child
}

/** The SidecarError a promise rejects with (anything else fails the test). */
async function errorOf(promise: Promise<unknown>): Promise<SidecarError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(SidecarError)
    return error as SidecarError
  }

  throw new Error('expected the call to fail')
}

describe.skipIf(skipIntegration)('secure sidecars (real processes, TLS, mutual TLS, token)', {timeout: 300_000}, () => {
  let dir: string
  let model: string
  let pki: string
  let tls: Sidecar | undefined // TLS + token
  let mutual: Sidecar | undefined // mutual TLS + token
  let plain: Sidecar | undefined // plaintext loopback + token
  const pem = (name: string) => join(pki, name)
  const clients: SidecarClient[] = []
  const client = (endpoint: string, credentials: SidecarCredentials) => {
    const c = new SidecarClient(endpoint, {credentials, unaryDeadlineMs: 10_000, streamDeadlineMs: 30_000})
    clients.push(c)
    return c
  }

  const withCa = (ca = 'ca.crt') => loadCredentials({'tls-ca': pem(ca)}, {})

  /** The built CLI with exactly this environment for the token (SAHARA_TOKEN unset unless given). */
  function cli(args: string[], env: Record<string, string | undefined> = {}) {
    return execa(resolve(repoRoot, 'bin', 'run.js'), args, {
      cwd: repoRoot,
      reject: false,
      timeout: 240_000,
      env: {NO_COLOR: '1', SAHARA_TOKEN: undefined, SAHARA_TOKEN_FILE: undefined, ...env},
    })
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-security-'))
    pki = join(dir, 'pki')
    await execa(python, [resolve(repoRoot, 'sidecar', 'tests', 'certs.py'), pki])
    model = await buildTinyModel(join(dir, 'tiny-llama'))
    const server = {SAHARA_TLS_CERT: pem('server.crt'), SAHARA_TLS_KEY: pem('server.key'), SAHARA_TOKEN: TOKEN}
    ;[tls, mutual, plain] = await Promise.all([
      startSidecar(model, server),
      startSidecar(model, {...server, SAHARA_TLS_CLIENT_CA: pem('ca.crt')}),
      startSidecar(model, {SAHARA_TOKEN: TOKEN}),
    ])
  })

  afterAll(async () => {
    for (const c of clients) c.close()
    await Promise.all([stop(tls), stop(mutual), stop(plain)])
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('TLS with the test CA and the token: describe, forward, generate', async () => {
    const c = client(tls!.endpoint, {...withCa(), token: TOKEN})
    expect((await c.describe()).family).toBe('llama')
    const result = await c.forward({prompts: ['Hi'], specs: [{heads: [], method: 0, eps: 0}], returnLogprobs: true})
    expect(result.tensors.get('logprobs')?.shape).toEqual([1, 1, 300])
    expect(await c.generate({prompts: ['Hi'], maxNewTokens: 2})).toHaveLength(1)
    // by name: the certificate is for localhost and 127.0.0.1
    const byName = client(tls!.endpoint.replace('127.0.0.1', 'localhost'), {...withCa(), token: TOKEN})
    expect(await byName.healthCheck()).toBe('SERVING')
  })

  it('missing or wrong token: UNAUTHENTICATED with the server\'s message; health needs none', async () => {
    const none = client(tls!.endpoint, withCa())
    const missing = await errorOf(none.describe())
    expect(missing.code).toBe('UNAUTHENTICATED')
    expect(missing.message).toMatch(/^Describe on 127\.0\.0\.1:\d+: UNAUTHENTICATED: missing bearer token/)
    expect(missing.message).toContain('SAHARA_TOKEN')
    expect((await errorOf(none.forward({prompts: ['Hi'], specs: [{heads: [], method: 0, eps: 0}], returnLogprobs: true}))).code).toBe('UNAUTHENTICATED')
    expect(await none.healthCheck()).toBe('SERVING')

    const wrong = await errorOf(client(tls!.endpoint, {...withCa(), token: 'not-the-token'}).generate({prompts: ['Hi'], maxNewTokens: 2}))
    expect(wrong.code).toBe('UNAUTHENTICATED')
    expect(wrong.message).toContain('invalid bearer token')
  })

  it('plaintext to a TLS sidecar, or a CA it does not trust, fails cleanly and quickly', async () => {
    for (const credentials of [{token: TOKEN}, {...withCa('other-ca.crt'), token: TOKEN}]) {
      const started = Date.now()
      const error = await errorOf(client(tls!.endpoint, credentials).describe())
      expect(error.code).toBe('UNAVAILABLE')
      expect(Date.now() - started).toBeLessThan(10_500)
    }
  })

  it('mutual TLS: a client certificate from the CA is required', async () => {
    const withCert = loadCredentials({'tls-ca': pem('ca.crt'), 'tls-cert': pem('client.crt'), 'tls-key': pem('client.key')}, {SAHARA_TOKEN: TOKEN})
    expect((await client(mutual!.endpoint, withCert).describe()).family).toBe('llama')
    expect((await errorOf(client(mutual!.endpoint, {...withCa(), token: TOKEN}).describe())).code).toBe('UNAVAILABLE')
    const rogue = loadCredentials({'tls-ca': pem('ca.crt'), 'tls-cert': pem('rogue.crt'), 'tls-key': pem('rogue.key')}, {SAHARA_TOKEN: TOKEN})
    expect((await errorOf(client(mutual!.endpoint, rogue).describe())).code).toBe('UNAVAILABLE')
  })

  it('plaintext loopback with a token: sent by the interceptor on unary and streaming calls', async () => {
    const c = client(plain!.endpoint, {token: TOKEN})
    expect((await c.describe()).family).toBe('llama')
    const result = await c.forward({prompts: ['Hi', 'Bread?'], specs: [{heads: [{layer: 0, head: 1}], method: 1, eps: 0}], returnHidden: true})
    expect(result.tensors.get('hidden')?.shape).toEqual([2, 1, 64])
    expect((await errorOf(client(plain!.endpoint, {}).describe())).code).toBe('UNAUTHENTICATED')
  })

  it('the CLI: --tls-ca with SAHARA_TOKEN or --token-file; clear errors otherwise', async () => {
    const endpoint = ['--model', model, '--endpoint', tls!.endpoint]
    const ok = await cli(['describe', ...endpoint, '--tls-ca', pem('ca.crt'), '--json'], {SAHARA_TOKEN: TOKEN})
    expect(ok.exitCode, ok.stderr).toBe(0)
    expect((JSON.parse(ok.stdout) as {family: string}).family).toBe('llama')

    const tokenFile = join(dir, 'token')
    writeFileSync(tokenFile, `${TOKEN}\n`)
    const fromFile = await cli(['describe', ...endpoint, '--tls-ca', pem('ca.crt'), '--token-file', tokenFile])
    expect(fromFile.exitCode, fromFile.stderr).toBe(0)

    const missing = await cli(['describe', ...endpoint, '--tls-ca', pem('ca.crt')])
    expect(missing.exitCode).toBe(1)
    expect(missing.stderr).toMatch(/Describe on 127\.0\.0\.1:\d+: UNAUTHENTICATED: missing bearer token/)

    writeFileSync(tokenFile, 'a-wrong-token\n')
    const wrong = await cli(['describe', ...endpoint, '--tls-ca', pem('ca.crt'), '--token-file', tokenFile])
    expect(wrong.exitCode).toBe(1)
    expect(wrong.stderr).toContain('UNAUTHENTICATED: invalid bearer token')

    const plaintext = await cli(['describe', ...endpoint], {SAHARA_TOKEN: TOKEN})
    expect(plaintext.exitCode).toBe(1)
    expect(plaintext.stderr).toContain('UNAVAILABLE')

    const noCa = await cli(['describe', ...endpoint, '--tls-ca', join(dir, 'nope.crt')], {SAHARA_TOKEN: TOKEN})
    expect(noCa.exitCode).toBe(2)
    expect(noCa.stderr).toContain('--tls-ca')
    expect(noCa.stderr).toContain('cannot read it')

    const halfCert = await cli(['describe', ...endpoint, '--tls-ca', pem('ca.crt'), '--tls-cert', pem('client.crt')], {SAHARA_TOKEN: TOKEN})
    expect(halfCert.exitCode).toBe(2)
    expect(halfCert.stderr).toContain('--tls-key')
  })

  it('sahara run: a sweep over the TLS sidecar through the endpoint pool, with the token', async () => {
    const prompts = join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(['How do I bake bread at home?', 'Tell me a joke about birds.']))
    const sweep = join(dir, 'sweep.yaml')
    writeFileSync(sweep, `name: secure\njobs:\n  - kind: ships\n    matrix: {model: ${model}, dataset: ${prompts}}\n`)
    const args = ['run', sweep, '--runs-dir', join(dir, 'runs'), '--endpoint', tls!.endpoint, '--tls-ca', pem('ca.crt'), '--tls-server-name', 'localhost']
    const denied = await cli(args)
    expect(denied.exitCode).not.toBe(0)
    expect(denied.stderr).toContain('UNAUTHENTICATED')
    const ok = await cli(args, {SAHARA_TOKEN: TOKEN})
    expect(ok.exitCode, ok.stderr).toBe(0)
  })

  it('a sidecar the CLI starts itself requires and gets the same token', async () => {
    const started = await cli(['describe', '--model', model, '--json'], {SAHARA_TOKEN: TOKEN})
    expect(started.exitCode, started.stderr).toBe(0)
    expect((JSON.parse(started.stdout) as {family: string}).family).toBe('llama')
  })
})
