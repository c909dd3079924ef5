import { readFile, writeFile } from 'node:fs/promises';
import { signReleaseKeyList, verifyReleaseStatement } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { collect, globalOptions, loadSettings, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import {
  addReleaseSigningOptions,
  addReleaseTrustOptions,
  loadReleaseSigner,
  type ReleaseSigningFlags,
  type ReleaseTrustFlags,
  releaseSigningFromFlags,
  releaseTrustFromFlags,
  withoutEnvelope,
} from '../release-flags.js';

export function registerReleaseCommands(program: Command): void {
  const release = program
    .command('release')
    .description('signed release statements: which patch is the current release of a realm');

  addReleaseSigningOptions(
    release
      .command('refresh')
      .description(
        "re-sign the realm's unchanged head with a higher sequence and a new expiry (run from cron)",
      )
      .requiredOption('--realm <realm>', 'the realm'),
  ).action(async function (this: Command, flags: ReleaseSigningFlags & { realm: string }) {
    const output = globalOptions(this);
    const signing = await releaseSigningFromFlags(flags, loadSettings(), true);
    const result = await withSplinter(this, flags, (splinter) =>
      splinter.refreshRelease({ realm: flags.realm, release: signing! }),
    );
    printResult(output, withoutEnvelope(result), [
      `${result.realm}: release statement #${result.sequence} for head ${result.head}, valid until ${result.expiresAt}`,
    ]);
  });

  release
    .command('show')
    .description("the realm's newest signed release statement (DSSE JSON), e.g. to publish or verify offline")
    .requiredOption('--realm <realm>', 'the realm')
    .option('--output <file>', 'write the statement to FILE instead of standard output')
    .action(async function (this: Command, flags: { realm: string; output?: string }) {
      const output = globalOptions(this);
      const stored = await withSplinter(this, {}, (splinter) => splinter.releaseStatement(flags.realm));
      if (flags.output !== undefined) {
        await writeFile(flags.output, `${stored.envelope}\n`);
        printResult(output, withoutEnvelope(stored), [
          `wrote release statement #${stored.sequence} of ${stored.realm} to ${flags.output}`,
        ]);
      } else if (output.json) printResult(output, stored, []);
      else process.stdout.write(`${stored.envelope}\n`);
    });

  release
    .command('publish')
    .description(
      "publish the realm's newest statement beside its patches (tag release in the head's repository)",
    )
    .requiredOption('--realm <realm>', 'the realm')
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry')
    .action(async function (this: Command, flags: { realm: string; plainHttp?: boolean }) {
      const output = globalOptions(this);
      const result = await withSplinter(this, flags, (splinter) => splinter.publishRelease(flags.realm));
      printResult(output, result, [`published release statement #${result.sequence} to ${result.reference}`]);
    });

  addReleaseTrustOptions(
    release
      .command('verify <file>')
      .description('check a release statement offline: signature, realm, expiry')
      .option('--key <pubfile>', 'trusted release key (repeatable; same as --release-key-file)', collect, [])
      .option('--realm <realm>', 'the realm the statement must be about'),
  ).action(async function (
    this: Command,
    file: string,
    flags: ReleaseTrustFlags & { key: string[]; realm?: string },
  ) {
    const output = globalOptions(this);
    const trust = await releaseTrustFromFlags({
      releaseKeyFile: [...flags.key, ...flags.releaseKeyFile],
      releaseKeys: flags.releaseKeys,
    });
    if (!trust) throw new SplinterError('TRUST_REQUIRED', 'no trusted release key: give --key PUBFILE');
    const envelope = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new SplinterError('NOT_FOUND', `cannot read ${file}: ${error.code ?? error.message}`);
    });
    const result = verifyReleaseStatement({ envelope, trust, realm: flags.realm });
    const s = result.statement;
    printResult(output, result, [
      `Verified OK: ${s.realm} release #${s.sequence} (${s.action}) is patch ${s.head.id} version ${s.head.version} (${s.head.digest})`,
      `signed by ${result.keyId}${result.keysVersion > 0 ? ` (release key list v${result.keysVersion})` : ''}; valid until ${s.expiresAt}`,
    ]);
  });

  release
    .command('sign-keys')
    .description('sign the next list of trusted release keys with a key of the current list (key rotation)')
    .requiredOption(
      '--release-key <file>',
      'a private key of the current list (version N-1; at first the pinned key)',
    )
    .requiredOption('--next <pubfile>', 'a public key of the new list (repeatable)', collect, [])
    .requiredOption(
      '--version <n>',
      'the new list version: 1 for the first rotation, then one more each time',
    )
    .requiredOption('--output <file>', 'where to write the signed list')
    .action(async function (
      this: Command,
      flags: { releaseKey: string; next: string[]; version: string; output: string },
    ) {
      const output = globalOptions(this);
      if (!/^[1-9]\d{0,8}$/.test(flags.version))
        throw new SplinterError(
          'INVALID_ARGUMENT',
          `--version ${JSON.stringify(flags.version)} is not a whole number >= 1`,
        );
      const settings = loadSettings();
      const signer = await loadReleaseSigner(flags.releaseKey, settings);
      const keys = await Promise.all(
        flags.next.map((file) =>
          readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
            throw new SplinterError('KEY_INVALID', `cannot read key file ${file}: ${error.code}`);
          }),
        ),
      );
      const envelope = await signReleaseKeyList(
        { version: Number(flags.version), keys, issuedAt: new Date().toISOString() },
        signer,
      );
      await writeFile(flags.output, `${JSON.stringify(envelope)}\n`);
      printResult(output, { version: Number(flags.version), signedBy: signer.keyId, output: flags.output }, [
        `release key list v${flags.version} (${keys.length} keys) signed by ${signer.keyId}: ${flags.output}`,
      ]);
    });
}
