/**
 * How the CLI proves itself to a remote sidecar (sidecar/sahara_sidecar/security.py is the other
 * side): TLS with a CA to trust (and a client certificate for mutual TLS), and a bearer token sent
 * as `authorization: Bearer <token>` metadata on every call.
 *
 * The token is read from a file (--token-file, or SAHARA_TOKEN_FILE) or from SAHARA_TOKEN, never
 * from a flag value: command lines are visible to every user of the machine (`ps`) and kept in
 * shell histories. TLS material comes from PEM files (--tls-ca, --tls-cert, --tls-key).
 *
 * How the token travels: over TLS as grpc-js call credentials composed with the SSL channel
 * credentials (the standard way: grpc-js attaches them to every call and never over plaintext).
 * grpc-js refuses call credentials on an insecure channel, so for a plaintext sidecar (loopback,
 * or one started with --insecure) the same header is added by a client interceptor instead.
 * Health checks carry it too; the sidecar does not require it there (probes have no token).
 */
import {
  type ChannelCredentials,
  type ClientOptions,
  InterceptingCall,
  type Interceptor,
  Metadata,
  credentials,
} from '@grpc/grpc-js'
import {readFileSync} from 'node:fs'

export const TOKEN_ENV = 'SAHARA_TOKEN'
export const TOKEN_FILE_ENV = 'SAHARA_TOKEN_FILE'

export class CredentialsError extends Error {
  override name = 'CredentialsError'
}

export interface SidecarCredentials {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string
  /** Connect with TLS, trusting `ca`; `cert` + `key` are the client's certificate (mutual TLS). */
  tls?: {ca: Buffer; cert?: Buffer; key?: Buffer; serverName?: string}
}

/** The CLI flags that carry credentials (paths only; see sidecarFlags). */
export interface CredentialFlags {
  'token-file'?: string
  'tls-ca'?: string
  'tls-cert'?: string
  'tls-key'?: string
  'tls-server-name'?: string
}

function readPem(path: string, flag: string): Buffer {
  let data: Buffer
  try {
    data = readFileSync(path)
  } catch (error) {
    throw new CredentialsError(`${flag} ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }

  if (!data.includes('-----BEGIN')) throw new CredentialsError(`${flag} ${path}: not a PEM file (no -----BEGIN line)`)
  return data
}

/** The token: --token-file, else SAHARA_TOKEN_FILE, else SAHARA_TOKEN; undefined when none is set. */
export function loadToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = tokenFile || env[TOKEN_FILE_ENV] || undefined
  let token: string
  let source: string
  if (path) {
    source = tokenFile ? `--token-file ${path}` : `${TOKEN_FILE_ENV}=${path}`
    try {
      token = readFileSync(path, 'utf8').trim()
    } catch (error) {
      throw new CredentialsError(`${source}: cannot read the token (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
    }

    if (!token) throw new CredentialsError(`${source}: the token file is empty`)
  } else if (env[TOKEN_ENV] !== undefined) {
    source = TOKEN_ENV
    token = env[TOKEN_ENV].trim()
    if (!token) throw new CredentialsError(`${TOKEN_ENV} is set but empty; set a token or unset it`)
  } else {
    return undefined
  }

  if (/[^\u0021-\u007E]/.test(token)) {
    throw new CredentialsError(`${source}: the token must be one line of printable ASCII characters without spaces`)
  }

  return token
}

/** Credentials from the flags and the environment (files are read now, so mistakes show before any work). */
export function loadCredentials(flags: CredentialFlags, env: NodeJS.ProcessEnv = process.env): SidecarCredentials {
  const token = loadToken(flags['token-file'], env)
  const {'tls-ca': ca, 'tls-cert': cert, 'tls-key': key, 'tls-server-name': serverName} = flags
  if (!ca && (cert || key || serverName)) throw new CredentialsError('--tls-cert, --tls-key and --tls-server-name need --tls-ca (the CA that signed the sidecar\'s certificate)')
  if (Boolean(cert) !== Boolean(key)) throw new CredentialsError('a client certificate needs both --tls-cert and --tls-key')
  const result: SidecarCredentials = {}
  if (token !== undefined) result.token = token
  if (ca) {
    result.tls = {ca: readPem(ca, '--tls-ca')}
    if (cert && key) Object.assign(result.tls, {cert: readPem(cert, '--tls-cert'), key: readPem(key, '--tls-key')})
    if (serverName) result.tls.serverName = serverName
  }

  return result
}

/** Adds the bearer header to every call (plaintext channels, where grpc-js has no call credentials). */
export function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`)
        next(metadata, listener)
      },
    })
}

/** What a grpc-js client constructor takes: channel credentials, and options (TLS name, interceptors). */
export function grpcCredentials(creds: SidecarCredentials = {}): {channel: ChannelCredentials; options: Partial<ClientOptions>} {
  const {token, tls} = creds
  if (!tls) {
    return {channel: credentials.createInsecure(), options: token === undefined ? {} : {interceptors: [bearerInterceptor(token)]}}
  }

  let channel = credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null)
  if (token !== undefined) {
    channel = credentials.combineChannelCredentials(
      channel,
      credentials.createFromMetadataGenerator((_params, callback) => {
        const metadata = new Metadata()
        metadata.set('authorization', `Bearer ${token}`)
        callback(null, metadata)
      }),
    )
  }

  return {channel, options: tls.serverName ? {'grpc.ssl_target_name_override': tls.serverName} : {}}
}
