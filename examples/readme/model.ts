/** The base model the README's method snippets adapt: the shipped tiny Qwen2-architecture model. */
import { AutoModelForCausalLM } from "peft-ts";

/** The shipped tiny model's folder (relative to the repository root, where the examples run). */
export const MODEL = "assets/tiny-bard";
/** A fresh copy of the tiny model. */
export const model = AutoModelForCausalLM.fromPretrained(MODEL);
