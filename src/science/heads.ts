/**
 * Head names. Heads are (layer, head), both 0-based, printed `L{layer}H{head}` (METHOD.md),
 * e.g. L2H26. Pure functions, no I/O.
 */

export interface Head {
  layer: number
  head: number
}

export interface Geometry {
  numLayers: number
  numHeads: number
}

export class HeadNameError extends Error {
  override name = 'HeadNameError'
}

const HEAD_NAME = /^L(\d+)H(\d+)$/

export function formatHead(h: Head): string {
  return `L${h.layer}H${h.head}`
}

/**
 * Parse `L2H26` into {layer: 2, head: 26}. With a geometry, also checks the range.
 * Errors say what was given and what is expected.
 */
export function parseHead(name: string, geometry?: Geometry): Head {
  const match = HEAD_NAME.exec(name.trim())
  if (!match) {
    throw new HeadNameError(
      `bad head name ${JSON.stringify(name)}: expected L{layer}H{head} with 0-based integers, e.g. L2H26`,
    )
  }

  const head = {layer: Number(match[1]), head: Number(match[2])}
  if (geometry) checkHead(head, geometry)
  return head
}

export function checkHead(h: Head, geometry: Geometry): void {
  if (h.layer >= geometry.numLayers) {
    throw new HeadNameError(
      `head ${formatHead(h)}: layer ${h.layer} out of range, the model has ${geometry.numLayers} layers (0..${geometry.numLayers - 1})`,
    )
  }

  if (h.head >= geometry.numHeads) {
    throw new HeadNameError(
      `head ${formatHead(h)}: head ${h.head} out of range, the model has ${geometry.numHeads} heads per layer (0..${geometry.numHeads - 1})`,
    )
  }
}

/** All L×H heads in scan order: layer-major, index = layer * H + head. */
export function allHeads(geometry: Geometry): Head[] {
  const heads: Head[] = []
  for (let layer = 0; layer < geometry.numLayers; layer++) {
    for (let head = 0; head < geometry.numHeads; head++) heads.push({layer, head})
  }

  return heads
}
