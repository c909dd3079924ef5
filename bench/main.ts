/**
 * `npm run bench -- <name> [args]`: runs one benchmark (or `all`). Each bench module default-exports
 * `(args: string[]) => Promise<void>` and prints its own side-by-side comparison and ratios.
 */
const BENCHES: Record<string, () => Promise<{ default: (args: string[]) => Promise<void> }>> = {
  push: () => import('./push.js'),
  pull: () => import('./pull.js'),
  chain: () => import('./chain.js'),
  'chain-depth': () => import('./chain-depth.js'),
  api: () => import('./api.js'),
  sign: () => import('./sign.js'),
  cdc: () => import('./cdc.js'),
  delta: () => import('./delta.js'),
  'release-day': () => import('./release-day.js'),
};

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const names = name === undefined || name === 'all' ? Object.keys(BENCHES) : [name];
  for (const each of names) {
    const load = BENCHES[each];
    if (!load) {
      console.error(
        `unknown benchmark ${JSON.stringify(each)}; choose one of: ${Object.keys(BENCHES).join(', ')}, all`,
      );
      process.exitCode = 2;
      return;
    }
    console.log(`\n== bench ${each} ==`);
    const bench = await load();
    await bench.default(args);
  }
}

await main();
