/**
 * The backend's environment variables, checked: a value outside its range is an EnvironmentError naming the
 * variable, the value and what is accepted, never silently ignored. An empty value counts as unset.
 */
import { EnvironmentError } from "../errors.js";

/** The value of `name`, or undefined when it is unset or empty. */
function read(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** An integer in [min, max] from `name`, or undefined when unset. */
export function envInteger(name: string, min: number, max: number, meaning: string): number | undefined {
  const v = read(name);
  if (v === undefined) return undefined;
  const n = /^[+]?\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new EnvironmentError(
      `${name}=${JSON.stringify(process.env[name])} is not valid: ${meaning} must be an integer from ${min} to ${max}`,
      `set ${name} to an integer in [${min}, ${max}], or unset it`,
    );
  }
  return n;
}

/** A non-negative number from `name`, or undefined when unset. */
export function envNumber(name: string, meaning: string): number | undefined {
  const v = read(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isFinite(n) && n >= 0)) {
    throw new EnvironmentError(
      `${name}=${JSON.stringify(process.env[name])} is not valid: ${meaning} must be a non-negative number`,
      `set ${name} to a number such as 1024, or unset it`,
    );
  }
  return n;
}

/** One of `choices` from `name`, or undefined when unset. */
export function envChoice<C extends string>(name: string, choices: readonly C[], meaning: string): C | undefined {
  const v = read(name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new EnvironmentError(
      `${name}=${JSON.stringify(process.env[name])} is not valid: ${meaning} is one of ` +
        `${choices.map((c) => `"${c}"`).join(", ")}`,
      `set ${name} to ${choices.join(" or ")}, or unset it`,
    );
  }
  return v as C;
}
