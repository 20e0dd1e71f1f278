#!/usr/bin/env node
// The `sahara` executable: oclif loads the compiled commands from dist/commands (npm run build).

// When stderr is not a terminal (logs, CI, tests), keep each error on one line so a
// `file:line:col: field: message` stays whole and grep-able instead of wrapped at 80 columns.
// (Set before oclif loads: it reads the width once, at import.)
if (!process.stderr.isTTY && process.env.OCLIF_COLUMNS === undefined) process.env.OCLIF_COLUMNS = '100000'

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
