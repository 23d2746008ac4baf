/**
 * `peft serve`: an OpenAI-compatible HTTP server on Node's http module over the continuous-batching engine.
 * /v1/completions and /v1/chat/completions (JSON or server-sent events), /v1/models, vLLM's
 * /v1/load_lora_adapter and /v1/unload_lora_adapter, /health, /metrics and a chat page at /. A request never
 * crashes the process: every error becomes an OpenAI-style error body, and a client that goes away mid-stream
 * has its sequence cancelled (its batch slot and cache freed) at once.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { IncrementalText, stopStringIndex } from "../generation/index.js";
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import { BASE_ROW } from "../peft/index.js";
import { DecodeEngine, type Sequence, type SequenceResult } from "./engine.js";
import type { ServedModel } from "./model.js";
import { ApiError, parseAdapterRequest, parseChat, parseCompletion, type GenerationParams } from "./protocol.js";
import { CHAT_PAGE } from "./page.js";

/** Options of PeftServer. */
export interface ServeOptions {
  /** The name clients use for the base model (default "base"). */
  modelName?: string;
  /** Required as "Authorization: Bearer <key>" on /v1/ and /metrics when set. */
  apiKey?: string;
  /** Most sequences decoded together (default 32). */
  maxBatch?: number;
  /** Most requests waiting beyond the batch; more get 429 (default 256). */
  maxQueue?: number;
  /** Largest max_tokens a request may ask for (default 1024). */
  maxTokens?: number;
  /** Longest prompt + completion in tokens (default: the model's position limit). */
  maxModelLen?: number;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Most bytes of free buffers kept for reuse (default 16 MiB; see EngineOptions.poolLimitBytes). */
  poolLimitBytes?: number;
  /** Waiting ÷ running requests at which arrivals join the batch (default 1.2; see EngineOptions). */
  waitingServedRatio?: number;
  /** Most decode steps arrivals wait to join the batch (default 4; see EngineOptions). */
  maxWaitingTokens?: number;
  /** Most ms arrivals wait for the rest of a drained batch (default 30; see EngineOptions). */
  maxQueueDelayMs?: number;
  /** Arrivals wait for a batch that ends within this many steps (default 8; see EngineOptions). */
  drainWaitSteps?: number;
}

const FINISH = { stop: "stop", length: "length", abort: "abort" } as const;

/** text up to its first stop string at or after `from`. */
function cutAtStop(text: string, stops: string[], from: number): string {
  const cut = stopStringIndex(text, stops, from);
  return cut >= 0 ? text.slice(0, cut) : text;
}

/** The longest end of text that could still grow into a stop string (held back while streaming). */
function heldBack(text: string, stops: string[]): number {
  let hold = 0;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) if (text.endsWith(s.slice(0, k))) hold = k;
  return hold;
}

/**
 * The text of generated tokens as it may be sent so far: cut at a stop string, without incomplete characters. While
 * streaming, the text grows a few tokens' decode at a time (IncrementalText); the finished text is decoded whole.
 */
class TextAccumulator {
  private sent = 0;
  private readonly streamed: IncrementalText;
  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly stops: string[],
  ) {
    this.streamed = new IncrementalText((ids) => tokenizer.decode(ids, { skipSpecialTokens: true }));
  }

  /** The full text (final: cut at the first stop string). */
  final(tokens: number[]): string {
    return cutAtStop(this.tokenizer.decode(tokens, { skipSpecialTokens: true }), this.stops, 0);
  }

  /** The text that can be sent now and was not sent before. */
  delta(tokens: number[], finished: boolean): string {
    let text: string;
    if (finished) text = this.final(tokens);
    else {
      // The text sent holds no stop string, nor the start of one (heldBack), so the search starts where it ends.
      text = cutAtStop(this.streamed.update(tokens), this.stops, this.sent);
      text = text.slice(0, text.length - heldBack(text, this.stops));
    }
    if (text.length <= this.sent) return "";
    const piece = text.slice(this.sent);
    this.sent = text.length;
    return piece;
  }
}

/** The OpenAI-compatible server over one base model and its adapters. */
export class PeftServer {
  readonly engine: DecodeEngine;
  private readonly http: Server;
  readonly modelName: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly maxModelLen: number;
  /** Requests served, by endpoint and status (for /metrics). */
  private readonly served = new Map<string, number>();

  constructor(
    readonly model: ServedModel,
    readonly tokenizer: PreTrainedTokenizer,
    private readonly opts: ServeOptions = {},
  ) {
    this.engine = new DecodeEngine(model, {
      maxBatch: opts.maxBatch ?? 32,
      ...(opts.waitingServedRatio !== undefined ? { waitingServedRatio: opts.waitingServedRatio } : {}),
      ...(opts.maxWaitingTokens !== undefined ? { maxWaitingTokens: opts.maxWaitingTokens } : {}),
      ...(opts.maxQueueDelayMs !== undefined ? { maxQueueDelayMs: opts.maxQueueDelayMs } : {}),
      ...(opts.drainWaitSteps !== undefined ? { drainWaitSteps: opts.drainWaitSteps } : {}),
      ...(opts.poolLimitBytes !== undefined ? { poolLimitBytes: opts.poolLimitBytes } : {}),
    });
    this.engine.onError = (err) => process.emitWarning(`peft serve: a decode step failed: ${(err as Error).message}`);
    this.modelName = opts.modelName ?? "base";
    const cfg = model.config as unknown as Record<string, unknown>;
    this.maxModelLen = opts.maxModelLen ?? Number(cfg["max_position_embeddings"] ?? cfg["n_positions"] ?? 2048);
    this.http = createServer((req, res) => void this.handle(req, res));
  }

  /** Start listening; resolves with the base URL (port 0 picks a free port). */
  async listen(port = 8000, host = "127.0.0.1"): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(port, host, () => resolve());
    });
    const address = this.http.address() as AddressInfo;
    return `http://${host}:${address.port}`;
  }

  /** Stop listening, end open connections and cancel every request. */
  async close(): Promise<void> {
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    try {
      await this.route(req, res, path);
    } catch (err) {
      const api =
        err instanceof ApiError ? err : new ApiError(500, `internal error: ${(err as Error)?.message ?? String(err)}`);
      if (!res.headersSent) this.json(res, api.status, api.body());
      else res.end();
    } finally {
      const key = `${path} ${res.statusCode}`;
      this.served.set(key, (this.served.get(key) ?? 0) + 1);
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? "GET";
    const routes: Record<string, [string, () => Promise<void> | void]> = {
      "/": ["GET", () => this.send(res, 200, "text/html; charset=utf-8", CHAT_PAGE)],
      "/health": ["GET", () => this.send(res, 200, "text/plain", "")],
      "/metrics": ["GET", () => this.metrics(res)],
      "/v1/models": ["GET", () => this.json(res, 200, this.modelList())],
      "/v1/completions": ["POST", async () => this.completion(res, parseCompletion(await this.body(req)), false)],
      "/v1/chat/completions": ["POST", async () => this.completion(res, parseChat(await this.body(req)), true)],
      "/v1/load_lora_adapter": [
        "POST",
        async () => this.loadAdapter(res, parseAdapterRequest(await this.body(req), true)),
      ],
      "/v1/unload_lora_adapter": [
        "POST",
        async () => this.unloadAdapter(res, parseAdapterRequest(await this.body(req), false).name),
      ],
    };
    const route = routes[path];
    if (!route) throw new ApiError(404, `no route ${method} ${path}`, null, "not_found");
    if (route[0] !== method)
      throw new ApiError(405, `${path} takes ${route[0]}, not ${method}`, null, "method_not_allowed");
    if ((path.startsWith("/v1/") || path === "/metrics") && this.opts.apiKey !== undefined) this.authorize(req);
    await route[1]();
  }

  private authorize(req: IncomingMessage): void {
    if (req.headers.authorization !== `Bearer ${this.opts.apiKey}`)
      throw new ApiError(
        401,
        "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
        null,
        "invalid_api_key",
      );
  }

  private async body(req: IncomingMessage): Promise<unknown> {
    const limit = this.opts.maxBodyBytes ?? 1 << 20;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new ApiError(413, `the request body is over ${limit} bytes`, null, "body_too_large");
      chunks.push(chunk);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (err) {
      throw new ApiError(400, `the body is not valid JSON: ${(err as Error).message}`, null, "invalid_json");
    }
  }

  private send(res: ServerResponse, status: number, type: string, text: string): void {
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  private json(res: ServerResponse, status: number, value: unknown): void {
    this.send(res, status, "application/json", JSON.stringify(value));
  }

  private modelList(): unknown {
    const entry = (id: string, parent: string | null) => ({
      id,
      object: "model",
      created: this.created,
      owned_by: "peft-ts",
      root: id,
      parent,
    });
    return {
      object: "list",
      data: [entry(this.modelName, null), ...this.model.adapters().map((a) => entry(a, this.modelName))],
    };
  }

  /** The adapter row name of a request's model field. */
  private adapterOf(model: string): string {
    if (model === this.modelName) return BASE_ROW;
    if (this.model.adapters().includes(model)) return model;
    throw new ApiError(
      404,
      `the model '${model}' does not exist: use '${this.modelName}' or a loaded adapter (GET /v1/models)`,
      "model",
      "model_not_found",
    );
  }

  private promptIds(
    request: GenerationParams & { prompt?: string; messages?: { role: string; content: string }[] },
  ): number[] {
    if (request.messages) {
      try {
        return this.tokenizer.applyChatTemplate(request.messages, { addGenerationPrompt: true });
      } catch (err) {
        throw new ApiError(
          400,
          `the chat template failed on these messages: ${(err as Error).message}`,
          "messages",
          "chat_template_error",
        );
      }
    }
    return this.tokenizer.encode(request.prompt!);
  }

  private async completion(
    res: ServerResponse,
    request: GenerationParams & { prompt?: string; messages?: { role: string; content: string }[] },
    chat: boolean,
  ): Promise<void> {
    const adapter = this.adapterOf(request.model);
    const promptIds = this.promptIds(request);
    if (promptIds.length === 0)
      throw new ApiError(400, "the prompt is empty", chat ? "messages" : "prompt", "empty_prompt");
    const cap = this.opts.maxTokens ?? 1024;
    if (request.maxTokens !== undefined && request.maxTokens > cap)
      throw new ApiError(
        400,
        `max_tokens ${request.maxTokens} is over this server's limit of ${cap}`,
        "max_tokens",
        "invalid_value",
      );
    const room = this.maxModelLen - promptIds.length;
    const maxTokens = request.maxTokens ?? Math.max(1, Math.min(cap, room));
    if (promptIds.length + maxTokens > this.maxModelLen) {
      throw new ApiError(
        400,
        `this model's maximum context length is ${this.maxModelLen} tokens; the prompt has ` +
          `${promptIds.length} and max_tokens asks for ${maxTokens}: shorten the prompt or lower ` +
          `max_tokens`,
        chat ? "messages" : "prompt",
        "context_length_exceeded",
      );
    }
    const stats = this.engine.stats();
    if (stats.waiting >= (this.opts.maxQueue ?? 256))
      throw new ApiError(
        429,
        `the server is busy (${stats.waiting} requests waiting); retry later`,
        null,
        "queue_full",
      );

    const id = `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const text = new TextAccumulator(this.tokenizer, request.stop);
    let seq: Sequence | null = null;
    const onToken = request.stream
      ? () => {
          const delta = text.delta(seq!.tokens, false);
          if (delta)
            this.sse(res, this.chunk(id, request, chat, delta, null, seq!.tokens.slice(-1), seq!.logprobs.slice(-1)));
        }
      : undefined;
    seq = this.engine.submit({
      promptIds,
      adapter,
      maxNewTokens: maxTokens,
      seed: request.seed,
      doSample: request.temperature > 0,
      temperature: request.temperature || 1,
      topP: request.topP,
      topK: Math.max(request.topK, 0),
      repetitionPenalty: request.repetitionPenalty,
      stopTokenIds: request.stopTokenIds,
      ignoreEos: request.ignoreEos,
      stopStrings: request.stop,
      tokenizer: { decode: (t) => this.tokenizer.decode(t, { skipSpecialTokens: true }) },
      ...(onToken ? { onToken } : {}),
    });
    // A client that goes away frees its slot at once.
    res.on("close", () => seq!.cancel());
    if (request.stream) {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      if (chat)
        this.sse(res, {
          ...this.chunkBase(id, request.model, chat),
          choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
        });
      res.flushHeaders();
    }
    const result = await seq.done;
    if (result.finishReason === FINISH.abort) {
      if (res.destroyed) return;
      throw new ApiError(500, "generation failed on the server (see its log)", null, "generation_failed");
    }
    const usage = {
      prompt_tokens: promptIds.length,
      completion_tokens: result.tokens.length,
      total_tokens: promptIds.length + result.tokens.length,
    };
    if (request.stream) {
      const rest = text.delta(result.tokens, true);
      this.sse(res, this.chunk(id, request, chat, rest, result.finishReason, [], []));
      if (request.includeUsage) this.sse(res, { ...this.chunkBase(id, request.model, chat), choices: [], usage });
      res.end("data: [DONE]\n\n");
      return;
    }
    this.json(res, 200, this.response(id, request, chat, text.final(result.tokens), result, usage));
  }

  private chunkBase(id: string, model: string, chat: boolean): Record<string, unknown> {
    return {
      id,
      object: chat ? "chat.completion.chunk" : "text_completion",
      created: Math.floor(Date.now() / 1000),
      model,
    };
  }

  private chunk(
    id: string,
    request: GenerationParams,
    chat: boolean,
    delta: string,
    finish: string | null,
    tokens: number[],
    logprobs: number[],
  ): Record<string, unknown> {
    const lp = request.logprobs ? this.logprobsOf(chat, tokens, logprobs) : null;
    const choice = chat
      ? { index: 0, delta: delta || finish === null ? { content: delta } : {}, logprobs: lp, finish_reason: finish }
      : { index: 0, text: delta, logprobs: lp, finish_reason: finish };
    return { ...this.chunkBase(id, request.model, chat), choices: [choice] };
  }

  /** Log-probabilities in each endpoint's shape (the chosen tokens only: top alternatives are not offered). */
  private logprobsOf(chat: boolean, tokens: number[], logprobs: number[]): unknown {
    const pieces = tokens.map((t) => this.tokenizer.decode([t]));
    if (chat)
      return {
        content: pieces.map((token, i) => ({
          token,
          logprob: logprobs[i]!,
          bytes: [...Buffer.from(token)],
          top_logprobs: [],
        })),
      };
    return { tokens: pieces, token_logprobs: logprobs, top_logprobs: null, text_offset: null };
  }

  private response(
    id: string,
    request: GenerationParams,
    chat: boolean,
    text: string,
    result: SequenceResult,
    usage: unknown,
  ): unknown {
    const lp = request.logprobs ? this.logprobsOf(chat, result.tokens, result.logprobs) : null;
    const choice = chat
      ? { index: 0, message: { role: "assistant", content: text }, logprobs: lp, finish_reason: result.finishReason }
      : { index: 0, text, logprobs: lp, finish_reason: result.finishReason };
    return {
      id,
      object: chat ? "chat.completion" : "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: [choice],
      usage,
    };
  }

  private sse(res: ServerResponse, value: unknown): void {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(value)}\n\n`);
  }

  private loadAdapter(res: ServerResponse, { name, path }: { name: string; path: string }): void {
    if (name === this.modelName || name === BASE_ROW)
      throw new ApiError(
        400,
        `'${name}' is the base model's name; choose another lora_name`,
        "lora_name",
        "invalid_value",
      );
    if (this.model.adapters().includes(name))
      throw new ApiError(
        400,
        `the adapter '${name}' is already loaded; unload it first`,
        "lora_name",
        "adapter_exists",
      );
    try {
      this.model.loadAdapter(name, path);
    } catch (err) {
      throw new ApiError(
        400,
        `could not load the adapter '${name}' from ${path}: ${(err as Error).message}`,
        "lora_path",
        "invalid_adapter",
      );
    }
    this.send(res, 200, "text/plain", `Success: LoRA adapter '${name}' added successfully.`);
  }

  private unloadAdapter(res: ServerResponse, name: string): void {
    if (!this.model.adapters().includes(name))
      throw new ApiError(404, `the adapter '${name}' is not loaded`, "lora_name", "adapter_not_found");
    if (this.engine.adapterInUse(name))
      throw new ApiError(
        409,
        `the adapter '${name}' is serving requests; unload it when they are done`,
        "lora_name",
        "adapter_in_use",
      );
    this.model.unloadAdapter(name);
    this.send(res, 200, "text/plain", `Success: LoRA adapter '${name}' removed successfully.`);
  }

  private metrics(res: ServerResponse): void {
    const s = this.engine.stats();
    const lines = [
      "# HELP peft_queue_length Requests waiting for a batch slot.",
      "# TYPE peft_queue_length gauge",
      `peft_queue_length ${s.waiting}`,
      "# HELP peft_running_sequences Sequences in the decode batch.",
      "# TYPE peft_running_sequences gauge",
      `peft_running_sequences ${s.running}`,
      "# HELP peft_tokens_per_second Generated tokens per second over the last 5 s.",
      "# TYPE peft_tokens_per_second gauge",
      `peft_tokens_per_second ${s.tokensPerSecond}`,
      "# HELP peft_generated_tokens_total Tokens generated.",
      "# TYPE peft_generated_tokens_total counter",
      `peft_generated_tokens_total ${s.generatedTokens}`,
      "# HELP peft_process_resident_bytes Resident memory of the server process.",
      "# TYPE peft_process_resident_bytes gauge",
      `peft_process_resident_bytes ${process.memoryUsage.rss()}`,
      "# HELP peft_loaded_adapters LoRA adapters loaded.",
      "# TYPE peft_loaded_adapters gauge",
      `peft_loaded_adapters ${this.model.adapters().length}`,
      "# HELP peft_active_adapter_sequences Running sequences per adapter.",
      "# TYPE peft_active_adapter_sequences gauge",
      ...Object.entries(s.activeAdapters).map(
        ([a, n]) => `peft_active_adapter_sequences{adapter="${a === BASE_ROW ? this.modelName : a}"} ${n}`,
      ),
      "# HELP peft_requests_total Requests answered, by path and status.",
      "# TYPE peft_requests_total counter",
      ...[...this.served].map(([k, n]) => {
        const [path, status] = k.split(" ");
        return `peft_requests_total{path="${path}",status="${status}"} ${n}`;
      }),
    ];
    this.send(res, 200, "text/plain; version=0.0.4", `${lines.join("\n")}\n`);
  }
}
