import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import { addRegistryAccessOptions, type RegistryFlags } from '../registry-flags.js';
import {
  addTrustOptions,
  loadSignerFlag,
  signatureFormatOption,
  type TrustFlags,
  trustedKeysFromFlags,
} from '../signing-flags.js';

export function registerSignatureCommands(program: Command): void {
  addRegistryAccessOptions(
    program
      .command('sign <ref>')
      .description('sign an artifact already in a registry or the embedded store, in cosign formats')
      .requiredOption('--key <key>', 'cosign private key: file, env://VAR or k8s://NS/NAME')
      .addOption(signatureFormatOption())
      .option('--plain-http', 'talk plain HTTP to the registry (never the default)'),
  ).action(async function (
    this: Command,
    reference: string,
    flags: RegistryFlags & { key: string; signatureFormat: 'legacy' | 'bundle' | 'both' },
  ) {
    const signer = await loadSignerFlag(flags.key);
    const result = await withSplinter(this, flags, (splinter) =>
      splinter.sign({ reference, signer, format: flags.signatureFormat }),
    );
    printResult(globalOptions(this), result, [
      result.reference,
      ...result.signatures.map((s) => `signed (${s.format}): ${s.location}`),
    ]);
  });

  addTrustOptions(
    addRegistryAccessOptions(
      program
        .command('verify <ref>')
        .description('check the cosign signatures of an artifact against trusted public keys')
        .option('--plain-http', 'talk plain HTTP to the registry (never the default)'),
    ),
    false,
  ).action(async function (this: Command, reference: string, flags: TrustFlags & RegistryFlags) {
    const keys = await trustedKeysFromFlags(flags);
    const result = await withSplinter(this, flags, (splinter) => splinter.verify({ reference, keys }));
    printResult(globalOptions(this), result, [
      result.reference,
      ...result.verified.map((v) => `verified: ${v.format} signature by ${v.key} (${v.keyId})`),
      ...result.rejected.map((r) => `rejected: ${r.format} signature ${r.signatureDigest}: ${r.reason}`),
      ...result.ignored.map((i) => `not counted: ${i.format} ${i.signatureDigest}: ${i.reason}`),
    ]);
  });
}
