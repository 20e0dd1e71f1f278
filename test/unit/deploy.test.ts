/**
 * deploy/k8s/ and Dockerfile.gpu cannot be applied or built here; this keeps their essentials from
 * rotting silently: one GPU per sidecar pod, a headless Service selecting the pods on the gRPC port,
 * TLS exec probes of grpc.health.v1 through the image's own checker, the Secrets and the volume
 * the pod refers to, a non-root user.
 */
import {readFileSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseAllDocuments} from 'yaml'

import {repoRoot} from '../helpers.js'

// Parsed manifests are checked field by field; `any` keeps those paths readable.
type Doc = Record<string, any>

const dir = join(repoRoot, 'deploy', 'k8s')
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'))
const docs: (Doc & {file: string})[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([])
    return {...(d.toJS() as Doc), file}
  }),
)
const one = (kind: string, name?: string): Doc => {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata?.name === name))
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1)
  return found[0]
}

const PORT = 50051
const SERVICE_DNS = 'sahara-sidecar.sahara.svc.cluster.local'

describe('deploy/k8s', () => {
  const deployment = one('Deployment', 'sahara-sidecar')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  const service = one('Service', 'sahara-sidecar')

  it('every object is in the sahara namespace; kustomization lists every manifest but the placeholder Secrets', () => {
    for (const d of docs.filter((d) => d.kind !== 'Namespace' && d.kind !== 'Kustomization')) expect(d.metadata.namespace, `${d.file} ${d.kind}`).toBe('sahara')
    const kustomization = one('Kustomization')
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => !['kustomization.yaml', 'secret.yaml'].includes(f)).sort())
  })

  it('one GPU per sidecar pod, non-root, the gRPC port', () => {
    expect(pod.containers).toHaveLength(1)
    expect(container.resources.limits['nvidia.com/gpu']).toBe(1)
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(pod.securityContext.runAsUser).toBe(10_001) // the image's user
    expect(container.ports).toEqual([expect.objectContaining({name: 'grpc', containerPort: PORT})])
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) expect(deployment.spec.template.metadata.labels[k]).toBe(v)
    expect(container.args).toContain('--model')
  })

  it('a headless Service on the gRPC port selecting the sidecar pods', () => {
    expect(service.spec.clusterIP).toBe('None')
    for (const [k, v] of Object.entries(service.spec.selector)) expect(deployment.spec.template.metadata.labels[k]).toBe(v)
    expect(service.spec.ports).toEqual([expect.objectContaining({port: PORT, targetPort: 'grpc'})])
    expect(`${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`).toBe(SERVICE_DNS)
  })

  it('startup, readiness and liveness probes: grpc.health.v1 over TLS through the image\'s checker', () => {
    for (const name of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const command: string[] = container[name]?.exec?.command
      expect(command, name).toBeDefined()
      expect(command.slice(0, 4)).toEqual(['python', '-m', 'sahara_sidecar', 'health'])
      expect(command[command.indexOf('--port') + 1]).toBe(String(PORT))
      expect(command[command.indexOf('--tls-server-name') + 1]).toBe(SERVICE_DNS)
      const ca = command[command.indexOf('--tls-ca') + 1]
      expect(mountedFrom(ca), `${name} --tls-ca ${ca}`).toEqual({secret: 'sahara-sidecar-tls', key: 'ca.crt'})
      expect(container[name].timeoutSeconds).toBeGreaterThan(5) // the checker's own --timeout is 5 s
    }

    expect(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600) // a 7B model loads
  })

  /** The Secret and key a file path in the container comes from (undefined if no Secret volume holds it). */
  function mountedFrom(path: string): {secret: string; key: string} | undefined {
    for (const mount of container.volumeMounts) {
      if (!path.startsWith(`${mount.mountPath}/`)) continue
      const volume = pod.volumes.find((v: Doc) => v.name === mount.name)
      if (volume?.secret) return {secret: volume.secret.secretName, key: path.slice(mount.mountPath.length + 1)}
    }

    return undefined
  }

  it('TLS and the token come from Secrets that exist, with the keys the pod reads; never an argument', () => {
    const env = Object.fromEntries(container.env.map((e: Doc) => [e.name, e.value]))
    expect(env.SAHARA_TOKEN).toBeUndefined()
    expect(mountedFrom(env.SAHARA_TOKEN_FILE)).toEqual({secret: 'sahara-sidecar-token', key: 'token'})
    expect(mountedFrom(env.SAHARA_TLS_CERT)).toEqual({secret: 'sahara-sidecar-tls', key: 'tls.crt'})
    expect(mountedFrom(env.SAHARA_TLS_KEY)).toEqual({secret: 'sahara-sidecar-tls', key: 'tls.key'})
    expect(JSON.stringify(container.args)).not.toMatch(/token|insecure/i)
    for (const [name, keys] of [['sahara-sidecar-token', ['token']], ['sahara-sidecar-tls', ['tls.crt', 'tls.key', 'ca.crt']]] as const) {
      const secret = one('Secret', name)
      expect(Object.keys(secret.stringData ?? secret.data)).toEqual(expect.arrayContaining([...keys]))
    }
  })

  it('the model cache is a shared PersistentVolumeClaim at /models', () => {
    const models = container.volumeMounts.find((m: Doc) => m.mountPath === '/models')
    const volume = pod.volumes.find((v: Doc) => v.name === models.name)
    const claim = one('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName)
    expect(claim.spec.accessModes).toContain('ReadWriteMany')
  })
})

describe('Dockerfile.gpu', () => {
  const text = readFileSync(join(repoRoot, 'Dockerfile.gpu'), 'utf8')
  it('non-root, the model volume, the port, a gRPC health check, pinned dependencies, no secrets', () => {
    expect(text).toMatch(/^USER sahara$/m)
    expect(text).toMatch(/useradd .*--uid 10001 sahara/)
    expect(text).toMatch(/^VOLUME \["\/models"\]$/m)
    expect(text).toMatch(new RegExp(`^EXPOSE ${PORT}$`, 'm'))
    expect(text).toMatch(/^HEALTHCHECK [\s\S]*CMD \["python", "-m", "sahara_sidecar", "health", "--port", "50051"\]/m)
    expect(text).toMatch(/pip install -r sidecar\/requirements-serve\.txt/)
    expect(text).not.toMatch(/^ENV[\s\S]*SAHARA_TOKEN=/m)
    for (const line of readFileSync(join(repoRoot, 'sidecar', 'requirements-serve.txt'), 'utf8').split('\n')) {
      if (line.trim() && !line.startsWith('#')) expect(line).toMatch(/^[\w.-]+==[\w.+-]+$/)
    }
  })
})
