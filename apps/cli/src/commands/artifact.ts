import type {
  ArtifactKind,
  FetchResult,
  PullResult,
  PushResult,
  SignatureFormat,
  TrustedKey,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult, transferLine } from '../output.js';
import { addRegistryAccessOptions } from '../registry-flags.js';
import {
  addTrustOptions,
  loadSignerFlag,
  signatureFormatOption,
  type TrustFlags,
  trustFromFlags,
} from '../signing-flags.js';
import { readTagRules } from '../tag-rules.js';

export interface PushFlags {
  registry?: string;
  plainHttp?: boolean;
  concurrency?: string;
  key?: string;
  signatureFormat: SignatureFormat;
  tags?: string;
  allowUnportable?: boolean;
  dereference?: boolean;
}

/** --plain-http and --concurrency: how any command that moves blobs talks to the registry. */
export function addTransferOptions(command: Command): Command {
  return addRegistryAccessOptions(command)
    .option('--plain-http', 'talk plain HTTP to the registry (never the default; env SPLINTER_PLAIN_HTTP)')
    .option('--concurrency <n>', 'parallel blob transfers (default 4)');
}

export function addPushOptions(command: Command, registryEnv: string): Command {
  return addTransferOptions(
    command.option(
      '--registry <ref>',
      `registry and namespace, host[:port][/path] (default: $${registryEnv}, else the embedded store)`,
    ),
  )
    .option(
      '--key <key>',
      'sign the pushed manifest with this cosign private key (file, env://VAR, k8s://NS/NAME)',
    )
    .option('--tags <file>', 'tag files by glob, e.g. {"locale:deDE": ["**/deDE/**"]} (see docs/format.md)')
    .option(
      '--dereference',
      'follow symlinks that leave DIR or are absolute, packing what they point at (as tar -h, cp -L)',
    )
    .option(
      '--allow-unportable',
      "accept paths some players' file systems cannot hold (recorded in the root)",
    )
    .addOption(signatureFormatOption());
}

interface FetchFlags extends TrustFlags {
  plainHttp?: boolean;
  concurrency?: string;
  locale?: string;
  platform?: string;
}

export interface PullFlags extends FetchFlags {
  output: string;
  replace?: boolean;
}

function addFetchOptions(command: Command): Command {
  return addTrustOptions(addTransferOptions(command), true)
    .option('--locale <locale>', 'only files tagged with this locale (and untagged ones), e.g. deDE')
    .option('--platform <platform>', 'only files tagged with this platform (and untagged ones)');
}

export function addPullOptions(command: Command): Command {
  return addFetchOptions(
    command
      .requiredOption('--output <dir>', 'folder to write the tree into (staged, then renamed into place)')
      .option('--replace', 'replace --output if it already exists'),
  );
}

export function parseConcurrency(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1 || parsed > 64) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `--concurrency must be a whole number from 1 to 64, got ${value}`,
    );
  }
  return parsed;
}

export async function runPush(
  command: Command,
  kind: ArtifactKind,
  dir: string,
  flags: PushFlags,
  identity: {
    realm?: string;
    name?: string;
    version: string;
    parent?: string;
    mods?: string[];
    modTrust?: TrustedKey[] | undefined;
    preload?: boolean;
    base?: string;
  },
): Promise<void> {
  const output = globalOptions(command);
  const concurrency = parseConcurrency(flags.concurrency);
  // The key is opened before anything is packed or uploaded: a wrong password costs nothing.
  const signer = flags.key === undefined ? undefined : await loadSignerFlag(flags.key);
  const tagRules = flags.tags === undefined ? undefined : await readTagRules(flags.tags);
  const result: PushResult = await withSplinter(
    command,
    { ...flags, interruptible: true },
    (splinter, _settings, signal) =>
      splinter.push({
        kind,
        dir,
        ...identity,
        registry: flags.registry,
        concurrency,
        signer,
        signatureFormat: flags.signatureFormat,
        tagRules,
        allowUnportable: flags.allowUnportable === true,
        dereference: flags.dereference === true,
        signal,
      }),
  );
  const human = [result.digest, result.reference, `transfer: ${transferLine(result.transfer)}`];
  human.push(
    `${result.chunks.files} files, ${result.chunks.chunks} chunks, ${result.chunks.newChunks} new (${result.chunks.newRecordBytes} bytes)`,
  );
  if (result.id !== undefined) {
    const recorded = `id: ${result.id}, status ${result.status}, parent ${result.parent ?? '(none)'}`;
    human.push(result.alreadyPushed ? `${recorded} (already pushed with this content)` : recorded);
  }
  for (const signature of result.signatures)
    human.push(`signed (${signature.format}): ${signature.location}`);
  printResult(output, result, human);
}

/** `patch fetch` / `mod fetch`: verify, then download into the cache without unpacking. */
export function registerFetchCommand(parent: Command, kind: ArtifactKind): void {
  addFetchOptions(
    parent
      .command('fetch <ref>')
      .description(`verify a ${kind} and download its blobs into the local cache, unpacking nothing`),
  ).action(async function (this: Command, reference: string, flags: FetchFlags) {
    await runFetch(this, kind, reference, flags);
  });
}

async function runFetch(
  command: Command,
  kind: ArtifactKind,
  reference: string,
  flags: FetchFlags,
): Promise<void> {
  const { output, concurrency, trust } = await prepareDownload(command, flags);
  const result: FetchResult = await withSplinter(
    command,
    { ...flags, interruptible: true },
    (splinter, _settings, signal) =>
      splinter.prefetch({
        kind,
        reference,
        trust,
        concurrency,
        locale: flags.locale,
        platform: flags.platform,
        signal,
      }),
  );
  printResult(output, result, [
    `${result.digest}: ${transferLine(result.transfer)}`,
    ...verifiedLines(result),
  ]);
}

/** What pull and fetch settle before they download: output mode, concurrency, trust. */
async function prepareDownload(command: Command, flags: FetchFlags) {
  return {
    output: globalOptions(command),
    concurrency: parseConcurrency(flags.concurrency),
    trust: await trustFromFlags(flags),
  };
}

function verifiedLines(result: FetchResult): string[] {
  return result.verifiedBy.map((v) => `verified: ${v.format} signature by ${v.key} (${v.keyId})`);
}

export async function runPull(
  command: Command,
  kind: ArtifactKind,
  reference: string,
  flags: PullFlags,
  keys: Uint8Array[] = [],
): Promise<void> {
  const { output, concurrency, trust } = await prepareDownload(command, flags);
  const result: PullResult = await withSplinter(
    command,
    { ...flags, interruptible: true },
    (splinter, _settings, signal) =>
      splinter.pull({
        kind,
        reference,
        output: flags.output,
        replace: flags.replace === true,
        concurrency,
        trust,
        keys,
        locale: flags.locale,
        platform: flags.platform,
        signal,
      }),
  );
  printResult(output, result, [
    `${result.digest} -> ${result.output} (${result.files} files, ${result.bytes} bytes; ${result.kept} unchanged, ${result.patched} patched in place; ${transferLine(result.transfer)})`,
    ...verifiedLines(result),
  ]);
}
