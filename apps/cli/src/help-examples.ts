import type { Command } from 'commander';
import { commandPath } from './usage.js';

/** `Examples:` after a command's help, as helm and kubectl print them. Keyed by the command's path. */
export const EXAMPLES: Record<string, string[]> = {
  'splinter patch push': [
    'splinter patch push ./build --realm eu-1 --version 1.4.0 --key cosign.key \\',
    '    --registry registry.example.com/patches',
    'splinter patch push ./build --realm eu-1 --version 1.5.0 --preload --key cosign.key',
  ],
  'splinter patch pull': [
    'splinter patch pull registry.example.com/patches/eu-1:1.4.0 --output ./game --key cosign.pub',
    'splinter patch pull patches/eu-1:1.4.0 --output ./game --trust trust.txt --locale deDE --replace',
  ],
  'splinter patch fetch': ['splinter patch fetch registry.example.com/patches/eu-1:1.5.0 --key cosign.pub'],
  'splinter patch activate': [
    'splinter patch activate 1.4.0 --realm eu-1',
    'splinter patch activate 42 --actor release-bot --json',
  ],
  'splinter patch rollback': [
    'splinter patch rollback --realm eu-1',
    'splinter patch rollback --realm eu-1 --to 1.2.0',
  ],
  'splinter patch list': [
    'splinter patch list --realm eu-1',
    "splinter patch list --realm eu-1 --json | jq '.patches[]'",
  ],
  'splinter patch history': ['splinter patch history --realm eu-1'],
  'splinter realm show': ['splinter realm show eu-1'],
  'splinter mod push': ['splinter mod push ./minimap --name minimap --version 2 --key cosign.key'],
  'splinter key generate': [
    'splinter key generate --output-key-prefix release',
    'COSIGN_PASSWORD=... splinter key generate   # no prompt, as cosign',
  ],
  'splinter sign': ['splinter sign registry.example.com/patches/eu-1:1.4.0 --key cosign.key'],
  'splinter verify': ['splinter verify registry.example.com/patches/eu-1:1.4.0 --key cosign.pub'],
  'splinter inspect': [
    'splinter inspect registry.example.com/patches/eu-1:1.4.0',
    'splinter inspect patches/eu-1:1.4.0 --json',
  ],
  'splinter launcher sync': [
    'splinter launcher sync --api https://launcher.example --token "$TOKEN" --realm eu-1 \\',
    '    --output ./game --key cosign.pub',
  ],
  'splinter activator run': ['splinter activator run --realm eu-1 --output ./mods --key mods.pub --watch'],
  'splinter token create': ['splinter token create --realm eu-1 --label "beta launchers"'],
};

export function addHelpExamples(command: Command): void {
  const examples = EXAMPLES[commandPath(command)];
  if (examples)
    command.addHelpText('after', `\nExamples:\n${examples.map((line) => `  $ ${line}`).join('\n')}`);
  for (const sub of command.commands) addHelpExamples(sub);
}
