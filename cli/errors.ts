/**
 * @file How the `kiln` command reports failures. A user error — a bad flag or value (commander), a
 * missing or malformed file, a bad job config, a shape error in a model, anything Kiln diagnosed and
 * raised as a KilnError — is one line on stderr and exit code 2. Anything else is an internal error:
 * one line and exit code 1. KILN_DEBUG=1 (or any KILN_DEBUG value) adds the stack trace.
 * Not-implemented features (NotImplementedError) exit 3. An error marked `multiline` (backends/cuda/errors.ts
 * NvrtcError: the generated source around the failing line) is printed whole.
 */
import { KilnError } from '../ir/errors.ts';

export const EXIT_USER = 2;
export const EXIT_INTERNAL = 1;
export const EXIT_NOT_IMPLEMENTED = 3;

export function reportError(e: unknown, command: string): number {
  const debug = Boolean(process.env.KILN_DEBUG);
  const err = e instanceof Error ? e : new Error(String(e));
  const firstLine = err.message.split('\n')[0];
  if (err instanceof KilnError) {
    // Errors whose later lines are for the user too (an NVRTC failure: the source around the line).
    const text = (err as { multiline?: boolean }).multiline ? err.message : firstLine;
    const notImpl = err.name === 'NotImplementedError';
    console.error(`${command}: ${notImpl ? 'not implemented yet: ' : ''}${text}`);
    if (debug) console.error(err.stack);
    return notImpl ? EXIT_NOT_IMPLEMENTED : EXIT_USER;
  }
  console.error(`${command}: internal error: ${err.name}: ${firstLine}${debug ? '' : ' (KILN_DEBUG=1 shows the stack trace)'}`);
  if (debug) console.error(err.stack);
  return EXIT_INTERNAL;
}
