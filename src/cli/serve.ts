/**
 * `peft serve`: an OpenAI-compatible server for a base model and any number of LoRA adapters, chosen per request
 * by the "model" field; Ctrl-C stops it.
 */
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PeftServer, type ServeOptions } from "../serve/server.js";
import { ServedModel } from "../serve/model.js";
import { CliError } from "./errors.js";
import { findTokenizerDir, loadModel, loadTokenizer, requireAdapterDir } from "./folders.js";
import { dtypeOption, intOption, numOption, quantizationOption } from "./options.js";

export const SERVE_USAGE = `usage: peft serve --model DIR [--adapter NAME=DIR ...] [--port 8000] [options]

Serve the model over HTTP with OpenAI's API: POST /v1/completions, /v1/chat/completions (stream: true for
server-sent events), GET /v1/models; "model" names the base model (--served-model-name) or a loaded adapter.
Adapters load and unload at run time with POST /v1/load_lora_adapter {"lora_name","lora_path"} and
/v1/unload_lora_adapter {"lora_name"}. GET /health, GET /metrics (Prometheus text), and a chat page at /.
  --model DIR               base model folder (causal LM)
  --adapter NAME=DIR        a LoRA adapter folder served as NAME (repeatable)
  --tokenizer DIR           tokenizer folder (default: the model folder)
  --dtype T                 the weights' dtype: auto (the checkpoint's torch_dtype, as vLLM), float32, bfloat16
                            or float16 (default auto); a half model decodes about 1.5× as fast as float32
  --quantization bitsandbytes  load the Linear layers in 4-bit NF4 (QLoRA's format; about 1/7 of their
                            float32 memory), computed in --dtype when it is bfloat16/float16, else float32
  --port N                  port (default 8000; 0 picks a free one)   --host H (default 127.0.0.1)
  --served-model-name NAME  the base model's name in requests (default: the model folder's name)
  --api-key KEY             require "Authorization: Bearer KEY" on /v1/ and /metrics
  --max-batch N             most sequences decoded together (default 32)
  --max-queue N             most waiting requests before 429 (default 256)
  --max-tokens N            largest max_tokens a request may ask for (default 1024)
  --max-model-len N         longest prompt + completion (default: the model's position limit)
  --pool-mb N               most MiB of free buffers kept for reuse (default 16), so that memory stays flat
                            over many requests of varied lengths
Scheduling (each forward pass streams all the weights, so arrivals that share a prefill cost little more than one):
  --waiting-served-ratio F  while decoding, prefill arrivals once they are F times the running requests
                            (default 1.2, as text-generation-inference)
  --max-waiting-tokens N    ... or once N decode steps have passed since the last prefill (default 4)
  --max-queue-delay-ms N    after the batch drains, wait up to N ms for the rest of its clients to come back
                            (default 30; 0: start at once)
  --drain-wait-steps N      while every running request ends within N steps, arrivals wait and start with the
                            next batch, so that closed-loop clients stay in step (default 8; 0: off)
`;

/** Run `peft serve`; resolves when the server stops (SIGINT/SIGTERM). */
export async function serve(argv: string[]): Promise<void> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      adapter: { type: "string", multiple: true },
      tokenizer: { type: "string" },
      dtype: { type: "string" },
      quantization: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "served-model-name": { type: "string" },
      "api-key": { type: "string" },
      "max-batch": { type: "string" },
      "max-queue": { type: "string" },
      "max-tokens": { type: "string" },
      "max-model-len": { type: "string" },
      "pool-mb": { type: "string" },
      "waiting-served-ratio": { type: "string" },
      "max-waiting-tokens": { type: "string" },
      "max-queue-delay-ms": { type: "string" },
      "drain-wait-steps": { type: "string" },
    },
  });
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}"`, "see peft serve --help");
  if (!v.model)
    throw new CliError("peft serve needs --model DIR", "e.g. peft serve --model ./model --adapter sql=./sql-lora");
  const adapters = (v.adapter ?? []).map((spec) => {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new CliError(`--adapter ${spec}: expected NAME=DIR`, "e.g. --adapter sql=./sql-lora");
    const [name, dir] = [spec.slice(0, eq), spec.slice(eq + 1)];
    requireAdapterDir(dir, `--adapter ${name}`);
    return { name, dir };
  });
  const opt = (name: "max-batch" | "max-queue" | "max-tokens" | "max-model-len") =>
    v[name] !== undefined ? intOption(`--${name}`, v[name]!, 1) : undefined;
  // Every option is checked before the model loads (seconds for a large one).
  const options: ServeOptions = {
    modelName: v["served-model-name"] ?? basename(resolve(v.model)),
    ...(v["api-key"] !== undefined ? { apiKey: v["api-key"] } : {}),
    maxBatch: opt("max-batch"),
    maxQueue: opt("max-queue"),
    maxTokens: opt("max-tokens"),
    maxModelLen: opt("max-model-len"),
    ...(v["pool-mb"] !== undefined ? { poolLimitBytes: intOption("--pool-mb", v["pool-mb"], 0) * 2 ** 20 } : {}),
    ...(v["waiting-served-ratio"] !== undefined
      ? { waitingServedRatio: numOption("--waiting-served-ratio", v["waiting-served-ratio"], 0) }
      : {}),
    ...(v["max-waiting-tokens"] !== undefined
      ? { maxWaitingTokens: intOption("--max-waiting-tokens", v["max-waiting-tokens"], 0) }
      : {}),
    ...(v["max-queue-delay-ms"] !== undefined
      ? { maxQueueDelayMs: numOption("--max-queue-delay-ms", v["max-queue-delay-ms"], 0) }
      : {}),
    ...(v["drain-wait-steps"] !== undefined
      ? { drainWaitSteps: intOption("--drain-wait-steps", v["drain-wait-steps"], 0) }
      : {}),
  };
  const port = v.port !== undefined ? intOption("--port", v.port, 0) : 8000;
  const dtype = dtypeOption(v.dtype ?? "auto");
  const quantizationConfig = v.quantization !== undefined ? quantizationOption(v.quantization, dtype) : null;
  const model = new ServedModel(loadModel(v.model, "causal-lm", {}, true, { dtype, quantizationConfig }));
  for (const { name, dir } of adapters) model.loadAdapter(name, dir);
  const tokenizer = loadTokenizer(findTokenizerDir(v.tokenizer, [v.model]));
  const server = new PeftServer(model, tokenizer, options);
  const url = await server.listen(port, v.host ?? "127.0.0.1");
  process.stderr.write(
    `peft serve: listening on ${url} (models: ${[server.modelName, ...model.adapters()].join(", ")})\n`,
  );
  await new Promise<void>((done) => {
    const stop = () => void server.close().then(done);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
