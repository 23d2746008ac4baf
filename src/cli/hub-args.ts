/**
 * Hub ids on the command line: `--model org/name`, `--adapter org/adapter`, `--tokenizer org/name` and a train
 * config's model_name_or_path/tokenizer become the repo's snapshot folder in huggingface_hub's cache (downloaded
 * when missing), before a command looks at them, so the commands keep working on folders. Local folders win.
 */
import { resolvePretrained, type PretrainedKind } from "../io/hub.js";
import { resolvePretrainedSync } from "../io/hub-sync.js";

/** The files each option needs: a model folder is also the default tokenizer folder, and adapters may carry one. */
const OPTION_KINDS: Record<string, PretrainedKind[]> = {
  "--model": ["model", "tokenizer"],
  "--adapter": ["adapter", "tokenizer"],
  "--tokenizer": ["tokenizer"],
};

/** argv with the values of --model/--adapter/--tokenizer (spaced or `--opt=value`) resolved to local folders. */
export async function resolveHubArguments(argv: readonly string[]): Promise<string[]> {
  const out = [...argv];
  for (let i = 0; i < out.length; i++) {
    const [flag, inline] = out[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const kinds = OPTION_KINDS[flag];
    const value = inline ?? out[i + 1];
    if (!kinds || value === undefined) continue;
    const folder = await resolvePretrained(value, kinds, {}, (w) => process.emitWarning(w));
    if (inline !== undefined) out[i] = `${flag}=${folder}`;
    else out[++i] = folder;
  }
  return out;
}

/** A train config's model and tokenizer ids resolved to local folders (the tokenizer defaults to the model's). */
export function resolveConfigIds(cfg: { model_name_or_path: string; tokenizer: string }): void {
  const model = resolvePretrainedSync(cfg.model_name_or_path, ["model", "tokenizer"]);
  cfg.tokenizer = cfg.tokenizer === cfg.model_name_or_path ? model : resolvePretrainedSync(cfg.tokenizer, "tokenizer");
  cfg.model_name_or_path = model;
}
