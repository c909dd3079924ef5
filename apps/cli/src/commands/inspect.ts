import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import { addRegistryAccessOptions, type RegistryFlags } from '../registry-flags.js';

export function registerInspectCommand(program: Command): void {
  addRegistryAccessOptions(
    program
      .command('inspect <ref>')
      .description('show an artifact: digest, type, annotations, layers and signatures')
      .option('--plain-http', 'talk plain HTTP to the registry'),
  ).action(async function (this: Command, reference: string, flags: RegistryFlags) {
    const output = globalOptions(this);
    const result = await withSplinter(this, flags, (splinter) => splinter.inspect(reference));
    printResult(output, result, [
      `reference:     ${result.reference}`,
      `digest:        ${result.digest}`,
      `artifact type: ${result.artifactType ?? '-'}`,
      ...Object.entries(result.annotations).map(([key, value]) => `annotation:    ${key}=${value}`),
      ...result.layers.map((l) => `layer:         ${l.digest} ${l.size} ${l.mediaType} ${l.title ?? ''}`),
      ...result.referrers.map((r) => `referrer:      ${r.digest} ${r.artifactType ?? r.mediaType}`),
    ]);
  });
}
