/**
 * Declarative config fields: one table per config gives each field's type, range, default and help text (as
 * Python's `field(default=…, metadata={"help": …})` does). The table fills the defaults, checks every value and
 * explains the field in errors, so that no config hand-writes a check per field. The PEFT method configs,
 * TrainingArguments and model configs all use it; it imports only the typed errors.
 */
import { ConfigError } from "../errors.js";

/** A value type: the test, and the words that errors use for it ("an integer ≥ 1"). */
export interface FieldType {
  readonly expected: string;
  accepts(value: unknown): boolean;
}

function fieldType(expected: string, accepts: (value: unknown) => boolean): FieldType {
  return { expected, accepts };
}

/** A plain object (not null, not an array). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** true or false. */
export const bool = fieldType("a boolean (true or false)", (v) => typeof v === "boolean");
/** Any string. */
export const string = fieldType("a string", (v) => typeof v === "string");
/** A non-empty string. */
export const nonEmptyString = fieldType("a non-empty string", (v) => typeof v === "string" && v !== "");
/** Only null. */
const nullValue = fieldType("null", (v) => v === null);
/** Any JSON object (its contents are checked elsewhere, or not used). */
export const anyObject = fieldType("an object", isPlainObject);

/** Bounds of a number: `min`/`max` inclusive, `above`/`below` exclusive. */
export interface Range {
  min?: number;
  max?: number;
  above?: number;
  below?: number;
}

function inRange(v: number, r: Range): boolean {
  return (
    (r.min === undefined || v >= r.min) &&
    (r.max === undefined || v <= r.max) &&
    (r.above === undefined || v > r.above) &&
    (r.below === undefined || v < r.below)
  );
}

function describeRange(r: Range): string {
  const lo = r.min ?? r.above,
    hi = r.max ?? r.below;
  if (lo !== undefined && hi !== undefined)
    return ` in ${r.min !== undefined ? "[" : "("}${lo}, ${hi}${r.max !== undefined ? "]" : ")"}`;
  if (r.min !== undefined) return ` ≥ ${r.min}`;
  if (r.above !== undefined) return ` > ${r.above}`;
  if (r.max !== undefined) return ` ≤ ${r.max}`;
  if (r.below !== undefined) return ` < ${r.below}`;
  return "";
}

/** A finite number (JSON has no NaN or Infinity) within `range`. */
export function number(range: Range = {}): FieldType {
  return fieldType(
    `a number${describeRange(range)}`,
    (v) => typeof v === "number" && Number.isFinite(v) && inRange(v, range),
  );
}

/** A whole number within `range` (and a safe integer, so that counts and sizes stay exact). */
export function integer(range: Range = {}): FieldType {
  return fieldType(
    `an integer${describeRange(range)}`,
    (v) => typeof v === "number" && Number.isSafeInteger(v) && inRange(v, range),
  );
}

/** One of the listed values. */
export function oneOf(...values: readonly (string | number | boolean)[]): FieldType {
  return fieldType(
    values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`,
    (v) => values.includes(v as never),
  );
}

/** A string matching `pattern` (described as `what`). */
export function matching(pattern: RegExp, what: string): FieldType {
  return fieldType(what, (v) => typeof v === "string" && pattern.test(v));
}

/** A list whose items are each of type `item`. */
export function listOf(item: FieldType): FieldType {
  return fieldType(`a list of items each ${item.expected}`, (v) => Array.isArray(v) && v.every((x) => item.accepts(x)));
}

/** An object whose values are each of type `item`. */
export function recordOf(item: FieldType): FieldType {
  return fieldType(
    `an object whose values are each ${item.expected}`,
    (v) => isPlainObject(v) && Object.values(v).every((x) => item.accepts(x)),
  );
}

/** Any of the given types. */
export function either(...types: readonly FieldType[]): FieldType {
  return fieldType(types.map((t) => t.expected).join(" or "), (v) => types.some((t) => t.accepts(v)));
}

/** `type` or null. */
export function nullable(type: FieldType): FieldType {
  return either(type, nullValue);
}

/** Module names: one string (a full-match regex) or a list of names. */
export const moduleNames = either(string, listOf(string));

/** One field of a config table. */
export interface FieldSpec<T = unknown> {
  readonly type: FieldType;
  readonly default: T;
  /** What the field does: shown with errors about it. */
  readonly help: string;
  /**
   * Set when some accepted values need a feature peft-ts does not implement: why, and what to use instead. Such
   * values are refused (never silently ignored); `implemented` says which values work (default: the default).
   */
  readonly notImplemented?: string;
  readonly implemented?: (value: unknown) => boolean;
}

/** A field: type, default, help text and, optionally, which values are not implemented. */
export function field<T>(
  type: FieldType,
  defaultValue: T,
  help: string,
  extra: Pick<FieldSpec, "notImplemented" | "implemented"> = {},
): FieldSpec<T> {
  return { type, default: defaultValue, help, ...extra };
}

/** A config's table of fields by name. */
export type FieldTable = Readonly<Record<string, FieldSpec>>;

/** Whether two JSON-like values are equal. */
export function sameValue(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** The defaults of a table (fresh copies, so that configs never share an object or list). */
export function defaultsOf<T extends FieldTable>(table: T): { -readonly [K in keyof T]: T[K]["default"] } {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) out[name] = structuredClone(spec.default);
  return out as { -readonly [K in keyof T]: T[K]["default"] };
}

/** A value as errors show it: JSON, with its kind when the kind is the problem ("0.1" (a string)). */
export function showValue(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : `${value} (not a finite number)`;
  if (typeof value === "bigint" || typeof value === "function" || typeof value === "symbol") return `a ${typeof value}`;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  if (text.length > 80) text = `${text.slice(0, 77)}…`;
  if (Array.isArray(value)) return `${text} (a list)`;
  if (value !== null && typeof value === "object") return `${text} (an object)`;
  return typeof value === "string" ? `${text} (a string)` : text;
}

/**
 * Check every field of `values` against the table: the type and range, then whether peft-ts implements the value.
 * With `presentOnly`, fields that `values` lacks are skipped.
 */
export function checkFields(
  owner: string,
  table: FieldTable,
  values: Record<string, unknown>,
  presentOnly = false,
): void {
  for (const [name, spec] of Object.entries(table)) {
    const value = values[name];
    if (presentOnly && value === undefined) continue;
    if (!spec.type.accepts(value)) {
      throw new ConfigError(
        `${owner}: \`${name}\` must be ${spec.type.expected}, got ${showValue(value)}`,
        `${name}: ${spec.help}`,
      );
    }
    if (spec.notImplemented !== undefined && !(spec.implemented ?? ((v) => sameValue(v, spec.default)))(value)) {
      throw new ConfigError(
        `${owner}: \`${name}\` = ${showValue(value)} is not implemented by peft-ts`,
        spec.notImplemented,
      );
    }
  }
}

/** A field that other versions of the Python library have and this one does not implement. */
export interface ForeignField {
  /** The versions that have it ("≥ 0.16", "0.0.1–0.2.0"). */
  readonly versions: string;
  /** Its value when unused: a field at that value (or null, Python's None) changes nothing and is accepted silently. */
  readonly default: unknown;
  /** Set when no value changes what peft-ts computes (metadata, GPU-only options): never an error. */
  readonly inert?: boolean;
}

/** Edit distance, for "did you mean" suggestions. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}

/** The closest of `names` to `word`, when it is close enough to be a likely typo. */
export function closest(word: string, names: readonly string[]): string | null {
  let best: string | null = null,
    bestD = Infinity;
  for (const n of names) {
    const d = editDistance(word.toLowerCase(), n.toLowerCase());
    if (d < bestD) [best, bestD] = [n, d];
  }
  return best !== null && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/** Where a config's fields come from: user code or a config of the CLI (strict), or a file a library wrote (lenient). */
export type FieldSource = "code" | "file";

/**
 * Check the names of the given fields. A field of `table` is fine. A field of another version of the Python
 * library (`foreign`) is accepted at its unused value; otherwise it is an error from code and a warning from a
 * file (newer releases add fields every month). A field no version has is an error from code, with a "did you
 * mean", and a warning from a file; it is kept either way, so that a file round-trips.
 */
export function checkFieldNames(
  owner: string,
  library: string,
  table: FieldTable,
  foreign: Readonly<Record<string, ForeignField>>,
  values: Record<string, unknown>,
  source: FieldSource,
): void {
  const known = Object.keys(table);
  for (const name of Object.keys(values)) {
    if (name in table) continue;
    const other = foreign[name];
    if (other) {
      if (other.inert || values[name] === null || sameValue(values[name], other.default)) continue;
      const message =
        `${owner}: \`${name}\` = ${showValue(values[name])} (a field of ${library} ` +
        `${other.versions}) is not implemented by peft-ts`;
      if (source === "code")
        throw new ConfigError(
          message,
          `remove \`${name}\` (or set it to ${JSON.stringify(other.default)}): peft-ts would not apply it`,
        );
      process.emitWarning(`${message}; it is kept in the config but ignored`);
      continue;
    }
    const guess = closest(name, [...known, ...Object.keys(foreign)]);
    const suggestion = guess ? ` (did you mean \`${guess}\`?)` : "";
    if (source === "code") {
      throw new ConfigError(
        `${owner}: unknown field \`${name}\`${suggestion}; no version of ${library} has it`,
        `the fields are: ${known.join(", ")}`,
      );
    }
    process.emitWarning(
      `${owner}: unknown field \`${name}\`${suggestion}; it is kept in the config but ignored ` +
        `(written by another ${library} version?)`,
    );
  }
}

/** Some fields of a table (for configs that share only part of another's fields). */
export function pick<T extends FieldTable, K extends keyof T & string>(table: T, ...names: K[]): Pick<T, K> {
  return Object.fromEntries(names.map((n) => [n, table[n]])) as Pick<T, K>;
}
