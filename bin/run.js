#!/usr/bin/env node
// The `sahara` executable: oclif loads the compiled commands from dist/commands (npm run build).
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
