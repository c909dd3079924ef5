import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bashCompletion, fishCompletion, zshCompletion } from '../src/commands/completion.js';
import { EXAMPLES } from '../src/help-examples.js';
import { buildProgram } from '../src/program.js';
import { commandPath } from '../src/usage.js';

const run = promisify(execFile);

function find(program: Command, path: string): Command | undefined {
  let at: Command | undefined = program;
  for (const name of path.split(' ').slice(1)) at = at?.commands.find((c) => c.name() === name);
  return at;
}

describe('help examples', () => {
  it('shows examples in --help, naming only flags the command has', () => {
    const program = buildProgram();
    expect(Object.keys(EXAMPLES).length).toBeGreaterThan(10);
    for (const [path, lines] of Object.entries(EXAMPLES)) {
      const command = find(program, path);
      expect(command && commandPath(command), path).toBe(path);
      let help = '';
      command!.configureOutput({ writeOut: (text) => (help += text) });
      command!.outputHelp();
      expect(help, path).toContain('\nExamples:\n  $ splinter ');
      const known = new Set(
        [...command!.options, ...program.options].flatMap((o) => [o.long, o.short]).filter(Boolean),
      );
      // Continuation lines (ending in a backslash) are one command.
      for (const line of lines
        .join('\n')
        .replace(/\\\n\s*/g, '')
        .split('\n')) {
        expect(line.startsWith(`${path} `) || line.includes(` ${path} `), line).toBe(true);
        for (const flag of line.match(/(?<=\s)--?[a-z][a-z-]*/g) ?? []) {
          expect(known.has(flag), `${path}: ${flag} in "${line}"`).toBe(true);
        }
      }
    }
  });
});

describe('shell completion', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'splinter-completion-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** Loads the bash script into a real bash and asks it what TAB offers after `words`. */
  async function complete(words: string[]): Promise<string[]> {
    const script = join(work, 'splinter.bash');
    await writeFile(script, bashCompletion(buildProgram()));
    const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
    const { stdout } = await run(
      'bash',
      [
        '--norc',
        '--noprofile',
        '-c',
        `source "$0"; COMP_WORDS=(${quoted}); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )); _splinter; printf '%s\\n' "\${COMPREPLY[@]}"; complete -p splinter`,
        script,
      ],
      { cwd: work },
    );
    const lines = stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('complete -o default -F _splinter splinter');
    return lines.slice(0, -1).filter((l) => l !== '');
  }

  it('completes commands, subcommands and flags from the commander tree in bash', async () => {
    const top = await complete(['splinter', '']);
    expect(top).toEqual(expect.arrayContaining(['patch', 'realm', 'launcher', 'completion', 'inspect']));
    expect(await complete(['splinter', 'pa'])).toEqual(['patch']);
    expect(await complete(['splinter', 'patch', 'r'])).toEqual(['rollback', 'revoke']);
    expect(await complete(['splinter', 'patch', 'push', '--re'])).toEqual([
      '--realm',
      '--registry',
      '--registry-config',
    ]);
    // Global flags and flag values are skipped when finding the command.
    expect(await complete(['splinter', '--json', 'patch', 'push', '--realm', 'patch', '--ver'])).toEqual([
      '--version',
    ]);
    expect(await complete(['splinter', 'mod', 'push', '--na'])).toEqual(['--name']);
    // A value or a leaf's argument completes file names.
    await writeFile(join(work, 'release.key'), '');
    expect(await complete(['splinter', 'patch', 'push', '--key', 'rel'])).toEqual(['release.key']);
    expect(await complete(['splinter', 'completion', ''])).not.toContain('patch');
  });

  it('generates zsh and fish scripts over the same tree', () => {
    const program = buildProgram();
    const zsh = zshCompletion(program);
    expect(zsh.startsWith('#compdef splinter\n')).toBe(true);
    expect(zsh).toContain("'patch push') reply=(");
    const fish = fishCompletion(program);
    expect(fish).toContain("-a 'push' -d 'pack DIR as a patch");
    expect(fish).toContain('-l realm -r -F');
  });
});
