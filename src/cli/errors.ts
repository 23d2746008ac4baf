/** Errors of the `peft` command: one line saying what is wrong, and a hint saying what to do about it. */
import { PeftError } from "../errors.js";

/** A user mistake the CLI recognised; `hint` says how to fix it. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Hints for errors that come from the library, recognised by their message. */
const LIBRARY_HINTS: [RegExp, string][] = [
  [/config\.json does not exist/, "pass a Hugging Face model folder (one with config.json and model.safetensors)"],
  [/model_type "[^"]*" is not supported/, "peft-ts supports the model types listed; convert or pick another model"],
  [
    /No tokenizer\.json|Tokenizer folder not found/,
    'pass --tokenizer DIR (or "tokenizer" in the config) pointing at a folder with tokenizer.json',
  ],
  [/peft_type "[^"]*" is not supported/, "set peft.peft_type to one of the supported methods"],
  [
    /target.modules|matched no module/i,
    'fix peft.target_modules: use the module names the message lists (or "all-linear")',
  ],
  [/unknown lr scheduler/, "set training_args.lr_scheduler_type to one of the schedules listed"],
  [/TrainingArguments:/, "fix the field in training_args"],
  [
    /adapter_config\.json is missing|not a PEFT adapter folder/,
    "pass the folder that holds adapter_config.json and adapter_model.safetensors",
  ],
  [
    /resumeFromCheckpoint: no checkpoint/,
    'checkpoints are written every save_steps steps (save_strategy "steps" or "epoch"); run ' +
      "without --resume to start over",
  ],
  [
    /chat template|chat_template/i,
    "the tokenizer has no chat template: drop --chat, or use a tokenizer folder whose " +
      "tokenizer_config.json has chat_template",
  ],
];

/** The hint for an error: its own, one recognised from a library message, or the --debug reminder. */
export function hintFor(err: unknown): string {
  if ((err instanceof CliError || err instanceof PeftError) && err.hint) return err.hint;
  const message = err instanceof Error ? err.message : String(err);
  for (const [pattern, hint] of LIBRARY_HINTS)
    if (pattern.test(message)) return `${hint} (--debug shows the stack trace)`;
  return "run again with --debug for the stack trace";
}

/** An error message on one line (library messages sometimes span several). */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, " ").trim() || (err instanceof Error ? err.name : "unknown error");
}
