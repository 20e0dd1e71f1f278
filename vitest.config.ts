import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real sidecars (CPU, tiny models): generous timeouts, and the
    // CLI they run is the built one (test/global-setup.ts builds dist/ once per run).
    testTimeout: 30_000,
    hookTimeout: 300_000,
    globalSetup: ['test/global-setup.ts'],
    fileParallelism: true,
  },
})
