/**
 * `peft generate`: continue prompts with a model, optionally with an adapter (or with the adapter switched
 * off), greedy or sampled; prompts are batched with left padding and only the new text is printed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { tensor } from "../tensor/index.js";
import { asGenerative, type GenerateOptions } from "../generation/index.js";
import { eosIds } from "../models/config.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import { AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM, PeftModel } from "../peft/index.js";
import { readJsonObject } from "../io/json.js";
import { promptMessages } from "../train/chat.js";
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import { CliError } from "./errors.js";
import { findTokenizerDir, loadModel, loadTokenizer, requireAdapterDir, requireModelDir } from "./folders.js";
import { dtypeOption, intOption, numOption, quantizationOption } from "./options.js";

export const GENERATE_USAGE = `usage: peft generate --model DIR [--adapter DIR] [--no-adapter] (--prompt TEXT ... | --prompts-file FILE) [options]

Continue prompts and print only the new text.
  --model DIR             base model folder (may be left out with --adapter: its base_model_name_or_path is used)
  --adapter DIR           a PEFT adapter folder to apply
  --no-adapter            with --adapter: run with the adapter switched off (compare with and without)
  --tokenizer DIR         tokenizer folder (default: the model folder, else the adapter folder)
  --dtype T               the base weights' dtype: float32 (default), bfloat16, float16 or auto (the checkpoint's
                          torch_dtype); a half model takes half the memory and decodes about 1.5× as fast
  --quantization bitsandbytes  load the base model's Linear layers in 4-bit NF4 (QLoRA's format), computed in
                          --dtype when it is bfloat16/float16, else float32
  --prompt TEXT           a prompt (repeat for a batch)
  --prompts-file FILE     prompts, one per line; .json/.jsonl: strings or {prompt} / {instruction, input?, system?} records
  --chat                  wrap each prompt as a user message with the tokenizer's chat template
  --system TEXT           with --chat: the system message
  --max-new-tokens N      tokens to generate (default 64)
  --do-sample             sample instead of greedy decoding, with:
    --temperature T       (default 1)  --top-p P (default 1)  --top-k K (default 50)  --seed S (default 0)
  --repetition-penalty R  penalise tokens already present (default 1: none)
  --json                  print a JSON array of {prompt, output}
`;

/** A prompt: plain text, or an instruction record (rendered with promptMessages under --chat). */
interface Prompt {
  text: string;
  record?: { instruction: string; input?: string; output: string; system?: string };
}

function readPrompts(file: string): Prompt[] {
  if (!existsSync(file))
    throw new CliError(
      `--prompts-file: ${file} does not exist`,
      "pass a text file with one prompt per line (or .json/.jsonl records)",
    );
  const text = readFileSync(file, "utf8");
  if (!/\.jsonl?$/i.test(file))
    return text
      .split(/\r?\n/)
      .filter((l) => l.trim() !== "")
      .map((l) => ({ text: l }));
  let items: unknown[];
  try {
    items = text.trimStart().startsWith("[")
      ? (JSON.parse(text) as unknown[])
      : text
          .split(/\r?\n/)
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as unknown);
  } catch (err) {
    throw new CliError(
      `--prompts-file: ${file} is not valid JSON/JSONL: ${(err as Error).message}`,
      "one JSON string or object per line, or a JSON array",
    );
  }
  return items.map((it, i) => {
    if (typeof it === "string") return { text: it };
    const o = (it ?? {}) as Record<string, unknown>;
    if (typeof o["prompt"] === "string") return { text: o["prompt"] };
    if (typeof o["instruction"] === "string") {
      const input = typeof o["input"] === "string" ? o["input"] : "";
      const record = {
        instruction: o["instruction"],
        output: "",
        ...(input ? { input } : {}),
        ...(typeof o["system"] === "string" ? { system: o["system"] } : {}),
      };
      return { text: input ? `${o["instruction"]}\n${input}` : o["instruction"], record };
    }
    throw new CliError(
      `--prompts-file: ${file}: item ${i + 1} has neither "prompt" nor "instruction"`,
      'use strings, {"prompt": ...} or {"instruction": ..., "input": ...}',
    );
  });
}

/** Token ids of each prompt (chat-wrapped or plain). */
function encodePrompts(
  tok: PreTrainedTokenizer,
  prompts: Prompt[],
  chat: boolean,
  system: string | undefined,
): number[][] {
  if (chat && tok.chatTemplate === null) {
    throw new CliError(
      `--chat: the tokenizer (${tok.nameOrPath}) has no chat template`,
      "drop --chat, or pass --tokenizer with a folder whose tokenizer_config.json has chat_template",
    );
  }
  return prompts.map((p) => {
    if (!chat) return tok.encode(p.text);
    const messages = promptMessages(p.record ?? { instruction: p.text, output: "" }, system);
    const rendered = tok.applyChatTemplate(messages, { addGenerationPrompt: true, tokenize: false });
    return tok.encode(rendered, { addSpecialTokens: false });
  });
}

function isEncoderDecoder(dir: string): boolean {
  const raw = readJsonObject(join(dir, "config.json"));
  return raw["is_encoder_decoder"] === true || ["t5", "mt5", "bart"].includes(String(raw["model_type"]));
}

/** Run `peft generate`. */
export function generate(argv: string[]): void {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      "no-adapter": { type: "boolean" },
      tokenizer: { type: "string" },
      dtype: { type: "string" },
      quantization: { type: "string" },
      prompt: { type: "string", multiple: true },
      "prompts-file": { type: "string" },
      chat: { type: "boolean" },
      system: { type: "string" },
      "max-new-tokens": { type: "string" },
      "do-sample": { type: "boolean" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      "top-k": { type: "string" },
      seed: { type: "string" },
      "repetition-penalty": { type: "string" },
      json: { type: "boolean" },
    },
  });
  if (positionals.length > 0)
    throw new CliError(
      `unexpected argument "${positionals[0]}"`,
      'prompts go after --prompt (quote them), e.g. peft generate --model DIR --prompt "Hello"',
    );
  if (!v.model && !v.adapter)
    throw new CliError(
      "peft generate needs --model DIR (or --adapter DIR whose config names its base model)",
      'e.g. peft generate --model ./model --prompt "Hello"',
    );
  if (v.prompt && v["prompts-file"])
    throw new CliError(
      "give either --prompt or --prompts-file, not both",
      "put all prompts in the file, or pass several --prompt",
    );
  const prompts: Prompt[] = v["prompts-file"]
    ? readPrompts(v["prompts-file"])
    : (v.prompt ?? []).map((text) => ({ text }));
  if (prompts.length === 0)
    throw new CliError("no prompts given", "pass --prompt TEXT (repeatable) or --prompts-file FILE");
  if (v.system !== undefined && !v.chat)
    throw new CliError("--system needs --chat", "add --chat to wrap prompts with the chat template");
  const sampling = ["temperature", "top-p", "top-k", "seed"].filter((k) => v[k as keyof typeof v] !== undefined);
  if (sampling.length > 0 && !v["do-sample"])
    throw new CliError(
      `--${sampling[0]} only applies with --do-sample`,
      "add --do-sample (greedy decoding ignores sampling options)",
    );
  const opts: Omit<GenerateOptions, "inputIds"> = {
    maxNewTokens: v["max-new-tokens"] !== undefined ? intOption("--max-new-tokens", v["max-new-tokens"], 1) : 64,
    doSample: v["do-sample"] ?? false,
    ...(v.temperature !== undefined ? { temperature: numOption("--temperature", v.temperature, 1e-6) } : {}),
    ...(v["top-p"] !== undefined ? { topP: numOption("--top-p", v["top-p"], 0, 1) } : {}),
    ...(v["top-k"] !== undefined ? { topK: intOption("--top-k", v["top-k"], 0) } : {}),
    ...(v.seed !== undefined ? { seed: intOption("--seed", v.seed, 0) } : {}),
    ...(v["repetition-penalty"] !== undefined
      ? { repetitionPenalty: numOption("--repetition-penalty", v["repetition-penalty"], 1e-6) }
      : {}),
  };

  const dtype = dtypeOption(v.dtype ?? "float32");
  const quantizationConfig = v.quantization !== undefined ? quantizationOption(v.quantization, dtype) : null;
  const load = { dtype, ...(quantizationConfig ? { quantizationConfig } : {}) };
  if (v.model) requireModelDir(v.model);
  if (v.adapter) requireAdapterDir(v.adapter);
  const tokDir = findTokenizerDir(v.tokenizer, [v.model, v.adapter]);
  const tok = loadTokenizer(tokDir);

  let peft: PeftModel | null = null;
  let model: PreTrainedModel;
  if (v.adapter && v.model) {
    model = loadModel(v.model, isEncoderDecoder(v.model) ? "seq2seq-lm" : "causal-lm", {}, true, load);
    peft = PeftModel.fromPretrained(model, v.adapter);
  } else if (v.adapter) {
    const taskType = readJsonObject(join(v.adapter, "adapter_config.json"))["task_type"];
    peft = (taskType === "SEQ_2_SEQ_LM" ? AutoPeftModelForSeq2SeqLM : AutoPeftModelForCausalLM).fromPretrained(
      v.adapter,
      load,
    );
    model = peft.getBaseModel();
  } else {
    model = loadModel(v.model!, isEncoderDecoder(v.model!) ? "seq2seq-lm" : "causal-lm", {}, true, load);
  }

  const ids = encodePrompts(tok, prompts, v.chat ?? false, v.system);
  const eos = [...new Set([...eosIds(model.config), ...(tok.eosTokenId !== null ? [tok.eosTokenId] : [])])];
  const pad = tok.padTokenId ?? model.config.pad_token_id ?? eos[0] ?? 0;
  const len = Math.max(...ids.map((r) => r.length));
  if (len === 0) throw new CliError("the prompts encode to no tokens", "pass a non-empty prompt");
  const inputIds = tensor(Int32Array.from(ids.flatMap((r) => [...new Array<number>(len - r.length).fill(pad), ...r])), [
    ids.length,
    len,
  ]);
  const attentionMask = tensor(
    Int32Array.from(ids.flatMap((r) => [...new Array<number>(len - r.length).fill(0), ...r.map(() => 1)])),
    [ids.length, len],
  );
  const full: GenerateOptions = {
    ...opts,
    inputIds,
    attentionMask,
    padTokenId: pad,
    ...(eos.length > 0 ? { eosTokenId: eos } : {}),
  };
  const run = () => (peft ? peft.generate(full) : asGenerative(model).generate(full));
  const out = peft && v["no-adapter"] ? peft.withAdapterDisabled(run) : run();
  const [rows, cols] = out.shape as [number, number];
  const values = out.dataSync();
  const skip = model.isEncoderDecoder ? 1 : len;
  // Rows end at their first eos (generate fills finished rows with the pad id).
  const newIds = Array.from({ length: rows }, (_, r) => {
    const row = Array.from(values.subarray(r * cols + skip, (r + 1) * cols));
    const end = row.findIndex((t) => eos.includes(t));
    return end < 0 ? row : row.slice(0, end);
  });
  for (const t of [out, inputIds, attentionMask]) t.dispose();
  const texts = tok.batchDecode(newIds, { skipSpecialTokens: true });

  if (v.json) {
    console.log(
      JSON.stringify(
        prompts.map((p, i) => ({ prompt: p.text, output: texts[i] })),
        null,
        2,
      ),
    );
  } else if (texts.length === 1) {
    console.log(texts[0]);
  } else {
    texts.forEach((t, i) => {
      console.log(`=== [${i + 1}] ${prompts[i]!.text.replace(/\s+/g, " ").slice(0, 70)}`);
      console.log(t);
    });
  }
}
