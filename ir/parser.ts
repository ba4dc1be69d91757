/**
 * @file Parser for the Graph IR text form written by printer.ts (its top comment defines the format).
 *
 * Three stages: a chevrotain lexer and parser turn the text into a small syntax tree that keeps
 * every token (so every later error can name its line:column); then the tree is replayed into a
 * GraphBuilder, which re-infers each node's type; finally the type written on each node line must
 * equal the inferred one. Attribute values are typed by the op's schema (`opSpec(op).attrs`).
 * Every problem is reported as a ParseError "line:column: message" (first problem only).
 *
 * The grammar is line-oriented: one input, node or output per line; blank lines and `#` comments
 * (to the end of a line) are ignored. Node values are `%<digits>` with any distinct numbers (they
 * are renumbered from 0 on printing), inputs are `%<name>` where a name may contain dots.
 */
import {
  createToken,
  EmbeddedActionsParser,
  EOF,
  type IParserErrorMessageProvider,
  type IToken,
  Lexer,
  type TokenType,
  tokenMatcher,
} from 'chevrotain';
import { DTYPES, type DType, isDType } from './dtype.ts';
import { KilnError, ShapeError } from './errors.ts';
import { type Graph, GraphBuilder, type InputKind } from './graph.ts';
import { ALL_OPS, type AttrKind, type AttrValue, isOpName, opSpec, type OpSpec, type ValueType } from './ops.ts';
import { formatType } from './printer.ts';

/** A syntax or meaning error in IR text; the message starts with "line:column: ". */
export class ParseError extends KilnError {
  override name = 'ParseError';
  /** 1-based line and column of the offending token. */
  readonly line: number;
  readonly column: number;
  /** The message without the position prefix. */
  readonly detail: string;
  constructor(line: number, column: number, detail: string) {
    super(`${line}:${column}: ${detail}`);
    this.line = line;
    this.column = column;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/** Any identifier, keywords included (an output may be called `data`, a graph `output`, ...). */
const Name = createToken({ name: 'Name', pattern: Lexer.NA, label: 'a name' });
const Ident = createToken({ name: 'Ident', pattern: /[A-Za-z_][A-Za-z0-9_.]*/, categories: [Name], label: 'a name' });
function keyword(word: string): TokenType {
  return createToken({ name: `Kw_${word}`, pattern: new RegExp(word), longer_alt: Ident, categories: [Name], label: `'${word}'` });
}
const KwGraph = keyword('graph');
const KwData = keyword('data');
const KwParam = keyword('param');
const KwState = keyword('state');
const KwFrozen = keyword('frozen');
const KwOutput = keyword('output');
const KwLoc = keyword('loc');

const ValueRef = createToken({ name: 'ValueRef', pattern: Lexer.NA, label: 'a value (%name or %0)' });
const ValueNum = createToken({ name: 'ValueNum', pattern: /%\d+/, categories: [ValueRef], label: 'a node value like %0' });
const ValueName = createToken({
  name: 'ValueName', pattern: /%[A-Za-z_][A-Za-z0-9_.]*/, categories: [ValueRef], label: 'an input name like %x',
});

const Num = createToken({ name: 'Num', pattern: Lexer.NA, label: 'a number' });
const NegInf = createToken({ name: 'NegInf', pattern: /-inf/, categories: [Num], label: 'a number' });
const NumLit = createToken({
  name: 'NumLit', pattern: /-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/, categories: [Num], label: 'a number',
});
const StringLit = createToken({ name: 'StringLit', pattern: /"(?:[^"\\\r\n]|\\.)*"/, label: 'a string' });

const NL = createToken({ name: 'NL', pattern: /\r\n?|\n/, line_breaks: true, label: 'end of line' });
const WS = createToken({ name: 'WS', pattern: /[ \t]+/, group: Lexer.SKIPPED });
const Comment = createToken({ name: 'Comment', pattern: /#[^\r\n]*/, group: Lexer.SKIPPED });

const punct = (name: string, ch: string): TokenType =>
  createToken({ name, pattern: new RegExp(ch.replace(/[[\]{}()]/, '\\$&')), label: `'${ch}'` });
const Colon = punct('Colon', ':');
const Equals = punct('Equals', '=');
const Comma = punct('Comma', ',');
const LCurly = punct('LCurly', '{');
const RCurly = punct('RCurly', '}');
const LBracket = punct('LBracket', '[');
const RBracket = punct('RBracket', ']');
const LParen = punct('LParen', '(');
const RParen = punct('RParen', ')');

const ALL_TOKENS: TokenType[] = [
  WS, Comment, NL, StringLit, ValueNum, ValueName, ValueRef, NegInf, NumLit, Num,
  KwGraph, KwData, KwParam, KwState, KwFrozen, KwOutput, KwLoc, Ident, Name,
  Colon, Equals, Comma, LCurly, RCurly, LBracket, RBracket, LParen, RParen,
];

const lexer = new Lexer(ALL_TOKENS, { positionTracking: 'full' });

// ---------------------------------------------------------------------------------------------
// Syntax tree (tokens kept for positions)

interface TypeAst {
  readonly dtype: IToken;
  readonly dims: IToken[];
}
type AttrValueAst = { readonly list: true; readonly open: IToken; readonly items: IToken[] } | { readonly list: false; readonly tok: IToken };
interface AttrAst {
  readonly key: IToken;
  readonly value: AttrValueAst;
}
interface InputAst {
  readonly stmt: 'input';
  readonly kind: IToken;
  readonly name: IToken;
  readonly type: TypeAst;
}
interface NodeAst {
  readonly stmt: 'node';
  readonly def: IToken;
  readonly type: TypeAst;
  readonly op: IToken;
  readonly operands: IToken[];
  readonly attrs: AttrAst[];
  readonly loc: IToken | undefined;
}
interface OutputAst {
  readonly stmt: 'output';
  readonly name: IToken;
  readonly value: IToken;
}
type StmtAst = InputAst | NodeAst | OutputAst;
interface GraphAst {
  readonly name: IToken;
  readonly stmts: StmtAst[];
}

// ---------------------------------------------------------------------------------------------
// Parser

function describeToken(t: IToken | undefined): string {
  if (!t || t.tokenType === EOF) return 'end of input';
  if (t.tokenType === NL) return 'end of line';
  return `'${t.image}'`;
}
function tokenLabel(t: TokenType): string {
  return t.LABEL ?? t.name;
}
function oneOf(labels: string[]): string {
  const u = [...new Set(labels)];
  return u.length <= 1 ? (u[0] ?? 'something else') : `${u.slice(0, -1).join(', ')} or ${u[u.length - 1]}`;
}
const NAME_ROLE: Record<string, string> = {
  graph: 'a graph name', nodeDef: 'an op name', outputDecl: 'an output name', type: 'a dtype', attr: 'an attribute name',
};
const STATEMENT_START = "an input (data, param, state), a node (%0 : type = op ...), an output, or '}'";

const errorMessages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage({ expected, actual, previous, ruleName }) {
    let want = tokenLabel(expected);
    const after = previous?.tokenType;
    if (expected === RCurly && ruleName === 'graph') want = STATEMENT_START;
    else if (expected === NL && after && tokenMatcher(previous, ValueRef) && ruleName === 'graph') want = "',' or end of line";
    else if (expected === RCurly && ruleName === 'nodeDef')
      want = after === LCurly ? "an attribute (name=value) or '}'" : "',' or '}'";
    else if (expected === RBracket) want = after === LBracket ? "a number or ']'" : "',' or ']'";
    else if (expected === Name) want = NAME_ROLE[ruleName] ?? want;
    return `expected ${want} but found ${describeToken(actual)}`;
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `unexpected ${describeToken(firstRedundant)} after the closing '}'`;
  },
  buildNoViableAltMessage({ expectedPathsPerAlt, actual }) {
    const firsts = expectedPathsPerAlt.flatMap((paths) => paths.map((p) => p[0])).filter((t): t is TokenType => !!t);
    return `expected ${oneOf(firsts.map(tokenLabel))} but found ${describeToken(actual[0])}`;
  },
  buildEarlyExitMessage({ expectedIterationPaths, actual }) {
    const firsts = expectedIterationPaths.map((p) => p[0]).filter((t): t is TokenType => !!t);
    return `expected ${oneOf(firsts.map(tokenLabel))} but found ${describeToken(actual[0])}`;
  },
};

class TextFormParser extends EmbeddedActionsParser {
  constructor() {
    super(ALL_TOKENS, { errorMessageProvider: errorMessages, recoveryEnabled: false });
    this.performSelfAnalysis();
  }

  readonly graph = this.RULE('graph', (): GraphAst => {
    const stmts: StmtAst[] = [];
    this.MANY(() => this.CONSUME(NL));
    this.CONSUME(KwGraph);
    const name = this.CONSUME(Name);
    this.CONSUME(LCurly);
    this.CONSUME1(NL);
    this.MANY1(() => this.CONSUME2(NL));
    this.MANY2(() => {
      stmts.push(this.SUBRULE(this.statement));
      this.CONSUME3(NL);
      this.MANY3(() => this.CONSUME4(NL));
    });
    this.CONSUME(RCurly);
    this.MANY4(() => this.CONSUME5(NL));
    return { name, stmts };
  });

  private readonly statement = this.RULE('statement', (): StmtAst =>
    this.OR([
      { ALT: () => this.SUBRULE(this.inputDecl) },
      { ALT: () => this.SUBRULE(this.nodeDef) },
      { ALT: () => this.SUBRULE(this.outputDecl) },
    ]),
  );

  private readonly inputDecl = this.RULE('inputDecl', (): InputAst => {
    const kind = this.OR([
      { ALT: () => this.CONSUME(KwData) },
      { ALT: () => this.CONSUME(KwParam) },
      { ALT: () => this.CONSUME(KwState) },
      { ALT: () => this.CONSUME(KwFrozen) },
    ]);
    const name = this.CONSUME(ValueName);
    this.CONSUME(Colon);
    const type = this.SUBRULE(this.type);
    return { stmt: 'input', kind, name, type };
  });

  private readonly nodeDef = this.RULE('nodeDef', (): NodeAst => {
    const def = this.CONSUME(ValueNum);
    this.CONSUME(Colon);
    const type = this.SUBRULE(this.type);
    this.CONSUME(Equals);
    const op = this.CONSUME(Name);
    const operands: IToken[] = [];
    this.OPTION(() => {
      operands.push(this.CONSUME(ValueRef));
      this.MANY(() => {
        this.CONSUME(Comma);
        operands.push(this.CONSUME1(ValueRef));
      });
    });
    const attrs: AttrAst[] = [];
    this.OPTION1(() => {
      this.CONSUME(LCurly);
      this.MANY_SEP({ SEP: Comma, DEF: () => attrs.push(this.SUBRULE(this.attr)) });
      this.CONSUME(RCurly);
    });
    let loc: IToken | undefined;
    this.OPTION2(() => {
      this.CONSUME(KwLoc);
      this.CONSUME(LParen);
      loc = this.CONSUME(StringLit);
      this.CONSUME(RParen);
    });
    return { stmt: 'node', def, type, op, operands, attrs, loc };
  });

  private readonly outputDecl = this.RULE('outputDecl', (): OutputAst => {
    this.CONSUME(KwOutput);
    const name = this.CONSUME(Name);
    this.CONSUME(Equals);
    const value = this.CONSUME(ValueRef);
    return { stmt: 'output', name, value };
  });

  private readonly type = this.RULE('type', (): TypeAst => {
    const dtype = this.CONSUME(Name);
    const dims: IToken[] = [];
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => dims.push(this.CONSUME(Num)) });
    this.CONSUME(RBracket);
    return { dtype, dims };
  });

  private readonly attr = this.RULE('attr', (): AttrAst => {
    const key = this.CONSUME(Name);
    this.CONSUME(Equals);
    const value = this.OR([
      {
        ALT: (): AttrValueAst => {
          const open = this.CONSUME(LBracket);
          const items: IToken[] = [];
          this.MANY_SEP({ SEP: Comma, DEF: () => items.push(this.SUBRULE(this.scalar)) });
          this.CONSUME(RBracket);
          return { list: true, open, items };
        },
      },
      { ALT: (): AttrValueAst => ({ list: false, tok: this.SUBRULE1(this.scalar) }) },
    ]);
    return { key, value };
  });

  /** A number, or a name (true, false, inf, nan, a dtype); the schema decides which is valid. */
  private readonly scalar = this.RULE('scalar', (): IToken =>
    this.OR([{ ALT: () => this.CONSUME(Num) }, { ALT: () => this.CONSUME(Name) }]),
  );
}

const parser = new TextFormParser();

// ---------------------------------------------------------------------------------------------
// Semantic stage

function fail(tok: IToken, detail: string): never {
  throw new ParseError(tok.startLine ?? 1, tok.startColumn ?? 1, detail);
}

/** Node values may be written with any digits; %007 and %7 are the same value. */
function valueKey(image: string): string {
  return /^%\d+$/.test(image) ? `%${image.slice(1).replace(/^0+(?=\d)/, '')}` : image;
}

function numberOf(tok: IToken): number | undefined {
  if (tokenMatcher(tok, NumLit)) return Number(tok.image);
  if (tokenMatcher(tok, NegInf)) return -Infinity;
  if (tok.image === 'inf') return Infinity;
  if (tok.image === 'nan') return NaN;
  return undefined;
}

function readDType(tok: IToken): DType {
  if (!isDType(tok.image)) fail(tok, `unknown dtype '${tok.image}' (expected one of ${DTYPES.join(', ')})`);
  return tok.image;
}

function readType(t: TypeAst): ValueType {
  const dtype = readDType(t.dtype);
  const shape = t.dims.map((d) => {
    const n = numberOf(d);
    if (n === undefined || !Number.isInteger(n) || n < 0 || Object.is(n, -0))
      fail(d, `dimension ${describeToken(d)} must be a non-negative integer`);
    return n;
  });
  return { dtype, shape };
}

function readAttr(op: string, key: string, kind: AttrKind, v: AttrValueAst): AttrValue {
  const what = `attribute '${key}' of ${op}`;
  const found = (t: IToken): string => `found ${describeToken(t)}`;
  const scalar = (want: string): IToken => {
    if (v.list) fail(v.open, `${what} must be ${want}, found a list`);
    return v.tok;
  };
  const list = (want: string): IToken[] => {
    if (!v.list) fail(v.tok, `${what} must be ${want}, ${found(v.tok)}`);
    return v.items;
  };
  const num = (t: IToken, want: string, int: boolean): number => {
    const n = numberOf(t);
    if (n === undefined || (int && !Number.isInteger(n))) fail(t, `${what} must be ${want}, ${found(t)}`);
    return n;
  };
  switch (kind) {
    case 'int':
      return num(scalar('an integer'), 'an integer', true);
    case 'float':
      return num(scalar('a number'), 'a number', false);
    case 'bool': {
      const t = scalar('true or false');
      if (t.image !== 'true' && t.image !== 'false') fail(t, `${what} must be true or false, ${found(t)}`);
      return t.image === 'true';
    }
    case 'dtype': {
      const t = scalar('a dtype');
      if (numberOf(t) !== undefined) fail(t, `${what} must be a dtype (${DTYPES.join(', ')}), ${found(t)}`);
      return readDType(t);
    }
    case 'ints':
      return list('a list of integers').map((t) => num(t, 'a list of integers', true));
    case 'value':
      return v.list ? v.items.map((t) => num(t, 'a number or a list of numbers', false)) : num(v.tok, 'a number or a list of numbers', false);
  }
}

function readAttrs(spec: OpSpec, n: NodeAst): Record<string, AttrValue> {
  const attrs: Record<string, AttrValue> = {};
  const keys = spec.attrs.map(([k]) => k);
  for (const a of n.attrs) {
    const key = a.key.image;
    const entry = spec.attrs.find(([k]) => k === key);
    if (!entry)
      fail(a.key, keys.length
        ? `unknown attribute '${key}' for ${spec.name} (it takes ${keys.join(', ')})`
        : `unknown attribute '${key}': ${spec.name} takes no attributes`);
    if (key in attrs) fail(a.key, `attribute '${key}' is given twice`);
    attrs[key] = readAttr(spec.name, key, entry[1], a.value);
  }
  for (const k of keys) if (!(k in attrs)) fail(n.op, `missing attribute '${k}' for ${spec.name}`);
  return attrs;
}

/** A near miss for an unknown op name, for the error message. */
function suggestOp(name: string): string {
  let best: string | undefined;
  let bestD = 3;
  for (const op of ALL_OPS) {
    const d = editDistance(name, op);
    if (d < bestD) [best, bestD] = [op, d];
  }
  return best ? ` (did you mean '${best}'?)` : '';
}
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function sameType(a: ValueType, b: ValueType): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

function buildGraph(ast: GraphAst): Graph {
  const b = new GraphBuilder(ast.name.image);
  const defs = new Map<string, { id: number; tok: IToken }>();
  const outputs = new Map<string, IToken>();
  const define = (tok: IToken, id: number): void => void defs.set(valueKey(tok.image), { id, tok });
  const checkNew = (tok: IToken): void => {
    const prev = defs.get(valueKey(tok.image));
    if (prev) fail(tok, `${tok.image} is already defined (at ${prev.tok.startLine}:${prev.tok.startColumn})`);
  };
  const resolve = (tok: IToken): number => {
    const d = defs.get(valueKey(tok.image));
    if (!d) fail(tok, `undefined value ${tok.image}`);
    return d.id;
  };

  for (const s of ast.stmts) {
    switch (s.stmt) {
      case 'input': {
        checkNew(s.name);
        const type = readType(s.type);
        define(s.name, b.input(s.name.image.slice(1), type, s.kind.image as InputKind));
        break;
      }
      case 'node': {
        checkNew(s.def);
        const written = readType(s.type);
        const opName = s.op.image;
        if (!isOpName(opName)) fail(s.op, `unknown op '${opName}'${suggestOp(opName)}`);
        const spec = opSpec(opName);
        const ins = s.operands.map(resolve);
        if (spec.arity >= 0 ? ins.length !== spec.arity : ins.length < 1) {
          const want = spec.arity >= 0 ? `${spec.arity} operand${spec.arity === 1 ? '' : 's'}` : 'at least 1 operand';
          fail(s.op, `${opName} takes ${want}, found ${ins.length}`);
        }
        const attrs = readAttrs(spec, s);
        let loc: string | undefined;
        if (s.loc) {
          try {
            loc = JSON.parse(s.loc.image) as string;
          } catch {
            fail(s.loc, `invalid string ${s.loc.image}`);
          }
        }
        let id: number;
        try {
          id = b.op(opName, ins, attrs, loc);
        } catch (e) {
          if (e instanceof ShapeError) fail(s.op, ShapeError.format(e.op, e.operands, e.detail));
          throw e;
        }
        const inferred = b.typeOf(id);
        if (!sameType(written, inferred))
          fail(s.type.dtype, `${s.def.image} is annotated ${formatType(written)} but ${opName} infers ${formatType(inferred)}`);
        define(s.def, id);
        break;
      }
      case 'output': {
        const name = s.name.image;
        const prev = outputs.get(name);
        if (prev) fail(s.name, `output '${name}' is already defined (at ${prev.startLine}:${prev.startColumn})`);
        outputs.set(name, s.name);
        b.output(name, resolve(s.value));
        break;
      }
    }
  }
  return b.build();
}

// ---------------------------------------------------------------------------------------------
// Entry point

function endPosition(text: string): [number, number] {
  const lines = text.split(/\r\n?|\n/);
  return [lines.length, lines[lines.length - 1]!.length + 1];
}

/** Parse the text form of one graph; throws ParseError with line:column on the first problem. */
export function parseGraph(text: string): Graph {
  const lexed = lexer.tokenize(text);
  const lexError = lexed.errors[0];
  if (lexError) {
    const ch = text[lexError.offset] ?? '';
    const detail =
      ch === '"' ? 'unterminated string'
      : ch === '%' ? "'%' must be followed by an input name or a node number"
      : `unexpected character ${JSON.stringify(ch)}`;
    throw new ParseError(lexError.line ?? 1, lexError.column ?? 1, detail);
  }
  parser.input = lexed.tokens;
  const ast = parser.graph();
  const synError = parser.errors[0];
  if (synError) {
    const t = synError.token;
    const [line, column] =
      t.tokenType === EOF || !Number.isFinite(t.startLine) ? endPosition(text) : [t.startLine!, t.startColumn!];
    throw new ParseError(line, column, synError.message);
  }
  return buildGraph(ast);
}
