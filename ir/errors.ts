/**
 * @file Error types shared by every layer. A KilnError may carry the model source location
 * (file:line:column) where the failing op was called; the tracer fills it in.
 */

export class KilnError extends Error {
  override name = 'KilnError';
}

/** A shape or dtype rule of an op was broken. `op` names the op, `shapes` the operand types as text. */
export class ShapeError extends KilnError {
  override name = 'ShapeError';
  readonly op: string;
  readonly detail: string;
  readonly operands: string[];
  loc: string | undefined;
  constructor(op: string, operands: string[], detail: string, loc?: string) {
    super(ShapeError.format(op, operands, detail, loc));
    this.op = op;
    this.operands = operands;
    this.detail = detail;
    this.loc = loc;
  }
  /** Return a copy of this error that names the model source location. */
  withLoc(loc: string): ShapeError {
    const e = new ShapeError(this.op, this.operands, this.detail, loc);
    e.stack = `${e.name}: ${e.message}\n    at ${loc}`;
    return e;
  }
  static format(op: string, operands: string[], detail: string, loc?: string): string {
    const ops = operands.length ? ` with operands ${operands.join(', ')}` : '';
    return `${op}${ops}: ${detail}${loc ? ` (at ${loc})` : ''}`;
  }
}
