/**
 * Shared memory for streamed tensors, recycled across requests.
 *
 * The kernel maps and zeroes a fresh buffer's pages on their first write: measured on this
 * project's 2-core host, 2.6 ms per MB, as long as all the rest of receiving a tensor (gRPC,
 * protobuf, copying the chunks in). A scan receives tensors of the same few sizes request after
 * request, so a caller that is done with a result gives it back (`SidecarClient.recycle`) and a
 * later tensor of the same size, or a little smaller, is written into pages already mapped.
 *
 * A buffer goes back only through the Tensor it was lent as, once: a second give of the same
 * result, or of a tensor this pool did not lend, does nothing, so a later request's data is never
 * overwritten through a stale reference.
 */
import type {Tensor} from './client.js'

/**
 * Free buffers kept at most (bytes): four of a Ships request's largest tensors (2^27 floats), the
 * two requests in flight and the one being scored of one sidecar, and one more. Over many sidecars
 * the rest of their tensors are new memory, as before recycling.
 */
export const DEFAULT_MAX_FREE_BYTES = 2 * 1024 ** 3

export class TensorBuffers {
  private readonly free: SharedArrayBuffer[] = [] // oldest first
  private freeBytes = 0
  private readonly lent = new WeakMap<Tensor, SharedArrayBuffer>()

  constructor(readonly maxFreeBytes = DEFAULT_MAX_FREE_BYTES) {}

  /**
   * `byteLength` bytes of shared memory: the smallest free buffer that holds them and is at most
   * twice as large (a larger one would hold memory a small tensor does not need), else a new one.
   * Its contents are stale: the caller writes every byte (TensorAssembler checks that it did).
   */
  take(byteLength: number): Uint8Array {
    let best = -1
    for (const [i, buffer] of this.free.entries()) {
      const fits = buffer.byteLength >= byteLength && buffer.byteLength <= 2 * byteLength
      if (fits && (best < 0 || buffer.byteLength < this.free[best].byteLength)) best = i
    }

    if (best < 0) return new Uint8Array(new SharedArrayBuffer(byteLength))
    const [buffer] = this.free.splice(best, 1)
    this.freeBytes -= buffer.byteLength
    return new Uint8Array(buffer, 0, byteLength)
  }

  /** Record that `tensor` lies in a buffer from take(), so that give(tensor) may return it. */
  lend(tensor: Tensor): void {
    if (tensor.data.buffer instanceof SharedArrayBuffer) this.lent.set(tensor, tensor.data.buffer)
  }

  /** The tensor's buffer back to the free list (the caller no longer reads it); the oldest free ones are dropped over the cap. */
  give(tensor: Tensor): void {
    const buffer = this.lent.get(tensor)
    if (!buffer) return
    this.lent.delete(tensor)
    this.free.push(buffer)
    this.freeBytes += buffer.byteLength
    while (this.freeBytes > this.maxFreeBytes) this.freeBytes -= this.free.shift()!.byteLength
  }

  /** Bytes held in free buffers (for tests and diagnostics). */
  get heldBytes(): number {
    return this.freeBytes
  }
}

/** The pool every SidecarClient of this process uses unless given another. */
export const sharedTensorBuffers = new TensorBuffers()
