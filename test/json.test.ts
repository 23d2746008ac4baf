/** io/json: Python-compatible non-finite numbers (against files written by Python's json module) and line:column syntax errors. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseJson, pythonJson, toJson } from "../src/io/json.js";
import { rng } from "./helpers.js";

const FIXTURES = fileURLToPath(new URL("../../test/fixtures/json/", import.meta.url));

/** Non-finite numbers spelled as Python's repr does ("nan", "inf", "-inf"), everything else unchanged. */
function spelled(v: unknown): unknown {
  if (typeof v === "number" && !Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
  if (Array.isArray(v)) return v.map(spelled);
  if (v !== null && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, spelled(x)]));
  return v;
}

/** A random JSON value of finite numbers, strings with escapes, nested arrays and objects. */
function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 4 : 6));
  if (pick === 0) return (r() - 0.5) * 10 ** Math.floor(r() * 30 - 15);
  if (pick === 1) return ["", 'a"b', "line\nbreak", "tab\t\u0001", "é✓"][Math.floor(r() * 5)];
  if (pick === 2) return [true, false, null][Math.floor(r() * 3)];
  if (pick === 3) return Math.floor(r() * 1000);
  if (pick === 4) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
  return Object.fromEntries(
    Array.from({ length: Math.floor(r() * 4) }, (_, i) => [`k${Math.floor(r() * 9)}_${i}`, randomValue(r, depth + 1)]),
  );
}

describe("JSON with non-finite numbers", () => {
  it("writes NaN and ±Infinity exactly as Python's json.dumps(indent=2, sort_keys=True) does", () => {
    const python = readFileSync(`${FIXTURES}nonfinite_state.json`, "utf8");
    const value = parseJson(python);
    // The values Python itself read back from its file (non-finite ones spelled out by the generator script).
    assert.deepEqual(spelled(value), JSON.parse(readFileSync(`${FIXTURES}nonfinite_state.expected.json`, "utf8")));
    assert.equal(`${pythonJson(value)}\n`, python);
  });

  it("gives JSON.stringify's text for finite values, and reads back what it writes", () => {
    const r = rng(31);
    for (let i = 0; i < 200; i++) {
      const v = randomValue(r, 0);
      for (const indent of [0, 2]) {
        const text = toJson(v, { indent });
        assert.equal(text, JSON.stringify(v, null, indent));
        assert.deepEqual(parseJson(text), v);
      }
    }
    assert.equal(
      toJson({ a: undefined, b: [undefined, () => 1], c: new Date(0) }),
      JSON.stringify({ a: undefined, b: [undefined, () => 1], c: new Date(0) }),
    );
    // The slow path (taken for NaN) keeps "__proto__" as a plain key, as JSON.parse does.
    const parsed = parseJson('{"__proto__": {"x": 1}, "y": [NaN, -Infinity]}') as Record<string, unknown>;
    assert.deepEqual(Object.keys(parsed), ["__proto__", "y"]);
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.deepEqual(parsed["y"], [NaN, -Infinity]);
  });

  it("syntax errors name the line and column (1-based)", () => {
    const cases: [string, RegExp][] = [
      [
        '{\n  "a": 1,\n}',
        /^line 3, column 1: expected a double-quoted property name \(a trailing comma\?\), found "}"$/,
      ],
      ['{\n  "a": 1\n  "b": 2\n}', /^line 3, column 3: expected ',' or '}' after a property value, found "\\""$/],
      ["[1, 2,]", /^line 1, column 7: expected a value \(a trailing comma\?\), found "]"$/],
      ["{'a': 1}", /^line 1, column 2: expected a double-quoted property name, found "'"$/],
      ['{"a": nan}', /^line 1, column 7: expected a value, found "n"$/],
      ['{"a": 1} x', /^line 1, column 10: unexpected text after the JSON value, found "x"$/],
      ['{"a": "b', /^line 1, column 7: unterminated string/],
      ['{"a"\n\n   1}', /^line 3, column 4: expected ':' after the property name "a", found "1"$/],
      ["", /^line 1, column 1: expected a value, found the end of the text$/],
    ];
    for (const [text, message] of cases)
      assert.throws(
        () => parseJson(text),
        (err: Error) => err instanceof SyntaxError && message.test(err.message),
        text,
      );
  });
});
