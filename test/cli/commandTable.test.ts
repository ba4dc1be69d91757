/**
 * Every `kiln` command and subcommand, read from the CLI itself (buildCli, in process): the README's
 * command table has a row for it, and its --help lists every option with its default (or its choices,
 * or marks it required). A command added without a README row or an option without a default fails here.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildCli } from '../../cli/main.ts';

/** Every runnable command as its path of names ('eval fid'); a command with subcommands only groups them. */
function commands(c: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  const out: Array<{ path: string[]; cmd: Command }> = [];
  for (const sub of c.commands) {
    const p = [...path, sub.name()];
    if (sub.commands.length) out.push(...commands(sub, p));
    else out.push({ path: p, cmd: sub });
  }
  return out;
}

/** The command words of each table row: `npx kiln eval fd\|fid ...` → [['eval'], ['fd', 'fid']]. */
const rows = readFileSync('README.md', 'utf8').split('\n')
  .filter((l) => l.startsWith('| `npx kiln '))
  .map((l) => l.slice(3, l.indexOf('`', 3)).replace(/\\\|/g, '|').split(' ').slice(2).map((w) => w.split('|')));

const all = commands(buildCli());

describe('the kiln command table', () => {
  it('finds the commands', () => {
    expect(all.map((c) => c.path.join(' '))).toEqual(expect.arrayContaining(['train', 'compile', 'sample', 'eval fid', 'golden check', 'golden update', 'bench', 'demo']));
  });
  for (const { path, cmd } of all) {
    it(`kiln ${path.join(' ')}: a README row, and every option with its default`, () => {
      expect(rows.some((r) => path.every((w, i) => r[i]?.includes(w))), `README.md has no row for 'npx kiln ${path.join(' ')}'`).toBe(true);
      const help = cmd.helpInformation();
      const block = help.split('\n\n').find((b) => b.startsWith('Options:'));
      const optionLines = (block ?? '').split(/\n(?=  -)/).slice(1).filter((l) => !l.includes('--help'));
      for (const l of optionLines) expect(l.replace(/\s+/g, ' '), `kiln ${path.join(' ')}: ${l.trim()}`).toMatch(/default|choices|required/);
    });
  }
});
