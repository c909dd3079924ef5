import { readFile } from 'node:fs/promises';
import type { TagRule } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import { z } from 'zod';

const TAG = /^(locale|platform):[A-Za-z0-9_-]{1,32}$/;
const rulesSchema = z.record(z.string().regex(TAG), z.array(z.string().min(1).max(1024)).min(1).max(1000));

/**
 * A push's tag rules (`--tags FILE`): a JSON object from tag to glob patterns, e.g.
 * `{ "locale:deDE": ["**\/deDE/**", "**\/*-deDE-*"], "platform:windows": ["bin/win64/**"] }`.
 */
export async function readTagRules(path: string): Promise<TagRule[]> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new SplinterError('INVALID_ARGUMENT', `cannot read --tags ${path}: ${error.code ?? error.message}`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SplinterError('INVALID_ARGUMENT', `--tags ${path} is not JSON`);
  }
  const result = rulesSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `--tags ${path}: ${issue?.path.join('.') || 'the file'}: tags are locale:NAME or platform:NAME, each with a list of globs`,
    );
  }
  return Object.entries(result.data).map(([tag, patterns]) => ({ tag, patterns }));
}
