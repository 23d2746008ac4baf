/**
 * The OpenAI-compatible request bodies `peft serve` accepts, checked field by field, and OpenAI's error shape.
 * Unknown fields and fields the server does not implement are refused by name (400), never ignored.
 */

/** An HTTP error with OpenAI's body: {"error": {"message", "type", "param", "code"}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  /** OpenAI's error type for the status. */
  get type(): string {
    if (this.status === 401) return "authentication_error";
    if (this.status === 404) return "not_found_error";
    if (this.status === 429) return "rate_limit_error";
    if (this.status >= 500) return "server_error";
    return "invalid_request_error";
  }

  /** The JSON body. */
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

type Kind = "string" | "integer" | "number" | "boolean" | "stop" | "messages" | "object" | "prompt";

interface Field {
  kind: Kind;
  min?: number;
  max?: number;
  /** Only these values are implemented (others are refused by name). */
  only?: unknown[];
}

/** Sampling and stopping fields shared by both endpoints (OpenAI's names; top_k, repetition_penalty, ignore_eos, stop_token_ids are vLLM's). */
const COMMON: Record<string, Field> = {
  model: { kind: "string" },
  max_tokens: { kind: "integer", min: 1 },
  temperature: { kind: "number", min: 0, max: 2 },
  top_p: { kind: "number", min: 0, max: 1 },
  top_k: { kind: "integer", min: -1 },
  repetition_penalty: { kind: "number", min: 0 },
  n: { kind: "integer", only: [1] },
  stream: { kind: "boolean" },
  stream_options: { kind: "object" },
  stop: { kind: "stop" },
  stop_token_ids: { kind: "object" },
  ignore_eos: { kind: "boolean" },
  seed: { kind: "integer" },
  user: { kind: "string" },
  presence_penalty: { kind: "number", only: [0] },
  frequency_penalty: { kind: "number", only: [0] },
};

const COMPLETION_FIELDS: Record<string, Field> = {
  ...COMMON,
  prompt: { kind: "prompt" },
  logprobs: { kind: "integer", only: [0, 1] },
  echo: { kind: "boolean", only: [false] },
};
const CHAT_FIELDS: Record<string, Field> = {
  ...COMMON,
  messages: { kind: "messages" },
  max_completion_tokens: { kind: "integer", min: 1 },
  logprobs: { kind: "boolean" },
  top_logprobs: { kind: "integer", only: [0] },
};

/** A generation request as the server runs it, whichever endpoint it came through. */
export interface GenerationParams {
  model: string;
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  stream: boolean;
  includeUsage: boolean;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  seed: number | undefined;
  logprobs: boolean;
}

/** A completion request: the prompt text. */
export interface CompletionRequest extends GenerationParams {
  prompt: string;
}

/** A chat request: the messages. */
export interface ChatRequest extends GenerationParams {
  messages: { role: string; content: string }[];
}

function describe(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

function checkField(name: string, f: Field, v: unknown): void {
  const wrong = (expected: string) =>
    new ApiError(
      400,
      `'${name}' must be ${expected}, got ` +
        `${describe(v)}${typeof v === "number" || typeof v === "string" ? ` (${JSON.stringify(v)})` : ""}`,
      name,
      "invalid_type",
    );
  switch (f.kind) {
    case "string":
      if (typeof v !== "string") throw wrong("a string");
      break;
    case "boolean":
      if (typeof v !== "boolean") throw wrong("a boolean");
      break;
    case "integer":
      if (!Number.isInteger(v)) throw wrong("an integer");
      break;
    case "number":
      if (typeof v !== "number" || !Number.isFinite(v)) throw wrong("a number");
      break;
    case "object":
      if (v === null || typeof v !== "object") throw wrong("an object or array");
      break;
    case "prompt":
      if (!(typeof v === "string" || (Array.isArray(v) && v.length === 1 && typeof v[0] === "string")))
        throw wrong("a string (one prompt per request)");
      break;
    case "stop":
      if (
        !(
          typeof v === "string" ||
          (Array.isArray(v) && v.length <= 4 && v.every((s) => typeof s === "string" && s.length > 0))
        )
      )
        throw wrong("a string or up to 4 non-empty strings");
      break;
    case "messages":
      if (
        !Array.isArray(v) ||
        v.length === 0 ||
        !v.every((m) => m && typeof m === "object" && typeof m.role === "string" && typeof m.content === "string")
      ) {
        throw wrong("a non-empty array of {role, content} messages with string content");
      }
      for (const m of v as Record<string, unknown>[]) {
        const extra = Object.keys(m).find((k) => k !== "role" && k !== "content" && k !== "name");
        if (extra) throw new ApiError(400, `messages: unsupported field '${extra}'`, "messages", "unknown_field");
      }
      break;
  }
  if (typeof v === "number") {
    if (f.min !== undefined && v < f.min)
      throw new ApiError(400, `'${name}' must be ≥ ${f.min}, got ${v}`, name, "invalid_value");
    if (f.max !== undefined && v > f.max)
      throw new ApiError(400, `'${name}' must be ≤ ${f.max}, got ${v}`, name, "invalid_value");
  }
  if (f.only && !f.only.includes(v))
    throw new ApiError(
      400,
      `'${name}' = ${JSON.stringify(v)} is not supported by peft serve (supported: ` +
        `${f.only.map((o) => JSON.stringify(o)).join(", ")})`,
      name,
      "unsupported_value",
    );
}

function checkBody(body: unknown, fields: Record<string, Field>, required: string[]): Record<string, unknown> {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw new ApiError(400, "the request body must be a JSON object", null, "invalid_body");
  const b = body as Record<string, unknown>;
  for (const [name, v] of Object.entries(b)) {
    const f = fields[name];
    if (!f) throw new ApiError(400, `unknown field '${name}'`, name, "unknown_field");
    if (v !== null) checkField(name, f, v);
  }
  for (const name of required)
    if (b[name] === undefined || b[name] === null)
      throw new ApiError(400, `'${name}' is required`, name, "missing_field");
  const streamOptions = b["stream_options"] as Record<string, unknown> | undefined | null;
  if (streamOptions) {
    const extra = Object.keys(streamOptions).find((k) => k !== "include_usage");
    if (extra) throw new ApiError(400, `stream_options: unknown field '${extra}'`, "stream_options", "unknown_field");
    if (streamOptions["include_usage"] !== undefined && typeof streamOptions["include_usage"] !== "boolean")
      throw new ApiError(400, "'stream_options.include_usage' must be a boolean", "stream_options", "invalid_type");
  }
  const stopIds = b["stop_token_ids"];
  if (stopIds != null && !(Array.isArray(stopIds) && stopIds.every(Number.isInteger)))
    throw new ApiError(400, "'stop_token_ids' must be an array of integers", "stop_token_ids", "invalid_type");
  return b;
}

function params(b: Record<string, unknown>, maxTokens: unknown): GenerationParams {
  const stop = b["stop"];
  return {
    model: b["model"] as string,
    maxTokens: (maxTokens ?? undefined) as number | undefined,
    temperature: (b["temperature"] ?? 1) as number,
    topP: (b["top_p"] ?? 1) as number,
    topK: (b["top_k"] ?? -1) as number,
    repetitionPenalty: (b["repetition_penalty"] ?? 1) as number,
    stream: (b["stream"] ?? false) as boolean,
    includeUsage: (b["stream_options"] as { include_usage?: boolean } | null)?.include_usage ?? false,
    stop: stop == null ? [] : typeof stop === "string" ? [stop] : (stop as string[]),
    stopTokenIds: (b["stop_token_ids"] ?? []) as number[],
    ignoreEos: (b["ignore_eos"] ?? false) as boolean,
    seed: (b["seed"] ?? undefined) as number | undefined,
    logprobs: Boolean(b["logprobs"]),
  };
}

/** Check a /v1/completions body. */
export function parseCompletion(body: unknown): CompletionRequest {
  const b = checkBody(body, COMPLETION_FIELDS, ["model", "prompt"]);
  const prompt = b["prompt"] as string | string[];
  return { ...params(b, b["max_tokens"] ?? 16), prompt: typeof prompt === "string" ? prompt : prompt[0]! };
}

/** Check a /v1/chat/completions body. */
export function parseChat(body: unknown): ChatRequest {
  const b = checkBody(body, CHAT_FIELDS, ["model", "messages"]);
  return {
    ...params(b, b["max_completion_tokens"] ?? b["max_tokens"]),
    messages: b["messages"] as { role: string; content: string }[],
  };
}

/** Check a body of vLLM's /v1/load_lora_adapter or /v1/unload_lora_adapter. */
export function parseAdapterRequest(body: unknown, load: boolean): { name: string; path: string } {
  const fields: Record<string, Field> = load
    ? { lora_name: { kind: "string" }, lora_path: { kind: "string" } }
    : { lora_name: { kind: "string" }, lora_int_id: { kind: "integer" } };
  const b = checkBody(body, fields, load ? ["lora_name", "lora_path"] : ["lora_name"]);
  return { name: b["lora_name"] as string, path: (b["lora_path"] ?? "") as string };
}
