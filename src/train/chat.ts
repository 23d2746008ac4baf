/**
 * Instruction data in the seeds' format ({instruction, input?, output, system?}) turned into training examples:
 * the prompt is rendered with the tokenizer's chat template and labelled -100 (not learned), the response and
 * an eos token are learned.
 */
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import type { Example } from "./data.js";

/** An instruction record. */
export interface InstructionRecord {
  instruction: string;
  input?: string;
  output: string;
  system?: string;
}

/** Options of tokenizeInstruction. */
export interface InstructionOptions {
  /** Truncate examples to this many tokens (default 512). */
  maxLength?: number;
  /** A system prompt for records without one. */
  defaultSystem?: string;
}

function asRecord(e: Example): InstructionRecord {
  if (typeof e["instruction"] !== "string" || typeof e["output"] !== "string") {
    throw new Error(
      `instruction data needs string fields "instruction" and "output"; got fields ${Object.keys(e).join(", ")}`,
    );
  }
  return e as unknown as InstructionRecord;
}

/** The chat messages of the prompt part of a record. */
export function promptMessages(r: InstructionRecord, defaultSystem?: string): { role: string; content: string }[] {
  const system = r.system ?? defaultSystem;
  const user = r.input ? `${r.instruction}\n${r.input}` : r.instruction;
  return [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: user }];
}

/** input_ids / attention_mask / labels of one instruction record (prompt tokens labelled -100). */
export function tokenizeInstruction(
  tokenizer: PreTrainedTokenizer,
  example: Example,
  opts: InstructionOptions = {},
): Example {
  const r = asRecord(example);
  const eos = tokenizer.eosTokenId;
  if (eos === null) throw new Error("the tokenizer has no eos token; instruction tuning appends one to every response");
  const promptText = tokenizer.applyChatTemplate(promptMessages(r, opts.defaultSystem), {
    addGenerationPrompt: true,
    tokenize: false,
  }) as string;
  const prompt = tokenizer.encode(promptText, { addSpecialTokens: false });
  const response = [...tokenizer.encode(r.output, { addSpecialTokens: false }), eos];
  const maxLength = opts.maxLength ?? 512;
  const inputIds = [...prompt, ...response].slice(0, maxLength);
  const labels = [...prompt.map(() => -100), ...response].slice(0, maxLength);
  return { input_ids: inputIds, attention_mask: inputIds.map(() => 1), labels };
}

/** Plain text for causal-LM training: every token is learned. */
export function tokenizeText(
  tokenizer: PreTrainedTokenizer,
  example: Example,
  opts: { maxLength?: number; field?: string } = {},
): Example {
  const text = example[opts.field ?? "text"];
  if (typeof text !== "string") throw new Error(`text data needs a string field "${opts.field ?? "text"}"`);
  const eos = tokenizer.eosTokenId;
  const ids = [...tokenizer.encode(text), ...(eos === null ? [] : [eos])].slice(0, opts.maxLength ?? 512);
  return { input_ids: ids, attention_mask: ids.map(() => 1), labels: [...ids] };
}

/** Classification records ({text, label}) tokenised for a sequence classifier. */
export function tokenizeClassification(
  tokenizer: PreTrainedTokenizer,
  example: Example,
  opts: { maxLength?: number } = {},
): Example {
  const text = example["text"],
    label = example["label"];
  if (typeof text !== "string" || typeof label !== "number")
    throw new Error('classification data needs "text" (string) and "label" (integer class id)');
  const ids = tokenizer.encode(text).slice(0, opts.maxLength ?? 512);
  return { input_ids: ids, attention_mask: ids.map(() => 1), label };
}
