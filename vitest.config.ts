import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources (the `source` export condition), so tests
// never run against a stale build.
const conditions = ['source', ...defaultServerConditions];

/**
 * Tests that run in process on sources alone: no registry, no PostgreSQL, no built CLI. They make
 * `npm run test:unit`, which needs no build. Everything else is end to end and checks the build first.
 */
const UNIT = [
  'packages/cdc/test/**/*.test.ts',
  'packages/seal/test/**/*.test.ts',
  'packages/pack/test/**/*.test.ts',
  'packages/core/test/**/*.test.ts',
  'packages/oci/test/body-limits.test.ts',
  'packages/oci/test/copy*.test.ts',
  'apps/cli/test/**/*.test.ts',
  'test/exports.test.ts',
];
const ALL = ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test/**/*.test.ts'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      {
        extends: true,
        test: { name: 'e2e', include: ALL, exclude: UNIT, globalSetup: ['test/built-is-fresh.ts'] },
      },
    ],
  },
});
