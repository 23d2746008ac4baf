/** Parsing numeric command-line option values with one-line errors. */
import { CliError } from "./errors.js";

/** A number option value (finite, ≥ min when given). */
export function numOption(name: string, value: string, min?: number, max?: number): number {
  const v = Number(value);
  if (value.trim() === "" || !Number.isFinite(v)) throw new CliError(`${name} expects a number, got "${value}"`, `e.g. ${name} 0.7`);
  if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
    throw new CliError(`${name} must be ${min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `≥ ${min}` : `≤ ${max}`}, got ${v}`, `pass a value in range to ${name}`);
  }
  return v;
}

/** An integer option value (≥ min when given). */
export function intOption(name: string, value: string, min?: number): number {
  const v = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim())) throw new CliError(`${name} expects a whole number, got "${value}"`, `e.g. ${name} ${min !== undefined ? Math.max(min, 10) : 10}`);
  if (min !== undefined && v < min) throw new CliError(`${name} must be ≥ ${min}, got ${v}`, `pass a whole number ≥ ${min} to ${name}`);
  return v;
}
