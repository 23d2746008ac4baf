/**
 * Reading and writing the JSON files of model, adapter and checkpoint folders, with errors that name the file.
 * Non-finite numbers are written and read as Python's json module does (NaN, Infinity, -Infinity), so a run whose
 * loss became NaN still saves its logs and HF tools still read them. Syntax errors give line:column.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "./atomic.js";

/** Parse a JSON object file; errors say which file is missing or malformed, and where. */
export function readJsonObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`${path} does not exist`);
  let value: unknown;
  try {
    value = parseJson(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new Error(`${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * JSON.parse that also reads Python's NaN, Infinity and -Infinity, and whose syntax errors say
 * "line L, column C: …" (1-based) instead of a character offset.
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // The slower parser below runs only on text JSON.parse refused: it accepts the Python literals or names the spot.
    return new PythonJsonParser(text).document();
  }
}

/** JSON text like Python's json.dumps(value, indent=2, sort_keys=True) (what HF writes for configs and trainer_state.json). */
export function pythonJson(value: unknown): string {
  return toJson(value, { indent: 2, sortKeys: true });
}

/** JSON text with non-finite numbers as NaN/Infinity/-Infinity; otherwise the same text as JSON.stringify(value, null, indent). */
export function toJson(value: unknown, opts: { indent?: number; sortKeys?: boolean } = {}): string {
  return serialize(value, " ".repeat(opts.indent ?? 0), "", opts.sortKeys ?? false) ?? "null";
}

function serialize(v: unknown, indent: string, depth: string, sortKeys: boolean): string | undefined {
  if (v === null) return "null";
  if (typeof v === "number")
    return Number.isFinite(v) ? JSON.stringify(v) : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  if (typeof v === "string" || typeof v === "boolean") return JSON.stringify(v);
  if (typeof v !== "object") return undefined; // undefined, functions and symbols are left out, as JSON.stringify does
  const toJSON = (v as { toJSON?: () => unknown }).toJSON;
  if (typeof toJSON === "function") return serialize(toJSON.call(v), indent, depth, sortKeys);
  const inner = depth + indent;
  const [open, sep, close] = indent ? [`\n${inner}`, `,\n${inner}`, `\n${depth}`] : ["", ",", ""];
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return `[${open}${v.map((x) => serialize(x, indent, inner, sortKeys) ?? "null").join(sep)}${close}]`;
  }
  const keys = Object.keys(v);
  if (sortKeys) keys.sort();
  const items: string[] = [];
  for (const k of keys) {
    const s = serialize((v as Record<string, unknown>)[k], indent, inner, sortKeys);
    if (s !== undefined) items.push(`${JSON.stringify(k)}:${indent ? " " : ""}${s}`);
  }
  return items.length === 0 ? "{}" : `{${open}${items.join(sep)}${close}}`;
}

const LITERALS: [string, unknown][] = [
  ["true", true],
  ["false", false],
  ["null", null],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
];
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not hold raw U+0000–U+001F
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

/** A strict JSON parser plus Python's three literals; errors name the line and column. */
class PythonJsonParser {
  private i = 0;

  constructor(private readonly s: string) {}

  document(): unknown {
    const v = this.value();
    this.space();
    if (this.i < this.s.length) this.fail("unexpected text after the JSON value");
    return v;
  }

  private fail(what: string): never {
    const before = this.s.slice(0, this.i);
    const line = before.split("\n").length,
      column = this.i - before.lastIndexOf("\n");
    const c = this.s[this.i];
    throw new SyntaxError(
      `line ${line}, column ${column}: ${what}, found ${c === undefined ? "the end of the text" : JSON.stringify(c)}`,
    );
  }

  private space(): void {
    while (this.i < this.s.length && " \t\n\r".includes(this.s[this.i]!)) this.i++;
  }

  /** Step over `c` when it comes next. */
  private eat(c: string): boolean {
    if (this.s[this.i] !== c) return false;
    this.i++;
    return true;
  }

  private match(re: RegExp): string | null {
    re.lastIndex = this.i;
    const m = re.exec(this.s);
    if (m) this.i += m[0].length;
    return m ? m[0] : null;
  }

  private value(): unknown {
    this.space();
    const c = this.s[this.i];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    for (const [word, v] of LITERALS) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    const n = this.match(NUMBER);
    if (n === null) this.fail("expected a value");
    return Number(n);
  }

  private string(): string {
    const m = this.match(STRING);
    if (m === null) this.fail("unterminated string, a raw control character or a bad escape in a string");
    return JSON.parse(m) as string;
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.i++;
    this.space();
    if (this.eat("}")) return out;
    for (;;) {
      this.space();
      if (this.s[this.i] !== '"')
        this.fail(`expected a double-quoted property name${this.s[this.i] === "}" ? " (a trailing comma?)" : ""}`);
      const key = this.string();
      this.space();
      if (!this.eat(":")) this.fail(`expected ':' after the property name ${JSON.stringify(key)}`);
      // defineProperty, as JSON.parse does: a "__proto__" key is data, not the prototype.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.space();
      if (this.eat("}")) return out;
      if (!this.eat(",")) this.fail("expected ',' or '}' after a property value");
    }
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.i++;
    this.space();
    if (this.eat("]")) return out;
    for (;;) {
      this.space();
      if (this.s[this.i] === "]") this.fail("expected a value (a trailing comma?)");
      out.push(this.value());
      this.space();
      if (this.eat("]")) return out;
      if (!this.eat(",")) this.fail("expected ',' or ']' after an array element");
    }
  }
}

/** Write a JSON object atomically (temp file + rename) in HF's layout, with a trailing newline when asked. */
export function writeJsonAtomic(path: string, value: unknown, trailingNewline = true): void {
  writeFileAtomic(path, pythonJson(value) + (trailingNewline ? "\n" : ""));
}
