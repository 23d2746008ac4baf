/**
 * `npm run bench -- --only serve`: a load generator against `peft serve` on 127.0.0.1 (the server runs in its own
 * process, bench/serve-worker.ts). Closed-loop clients stream completions for a fixed time; reported: p50/p99 time
 * to first token, p50 inter-token latency, total tokens/s, for 1/8/32 clients over 1/4/16 adapters and over the base
 * model alone, with the base weights in each of the given dtypes; then the goal's ratio (8 clients over one) from
 * alternating windows. Then the memory run: 10,000 short requests on a tiny model, the server's RSS every tenth of
 * the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** Start a worker; resolves with its URL and the process. */
async function startWorker(
  model: string,
  adapters: number,
  dtype = "float32",
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [join(here, "serve-worker.js"), "--model", model, "--adapters", String(adapters), "--dtype", dtype],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n")[0];
      if (out.includes("\n")) resolve(line!.trim());
    });
    child.once("exit", (code) => reject(new Error(`serve worker exited with ${code}`)));
  });
  return { url, child };
}

interface Timing {
  ttft: number[];
  itl: number[];
  tokens: number;
  seconds: number;
  requests: number;
}

/** One streamed completion; records its time to first token and the gaps between later tokens. */
async function streamOne(url: string, model: string, prompt: string, maxTokens: number, t: Timing): Promise<void> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  if (!res.ok) throw new Error(`serve bench: ${res.status} ${await res.text()}`);
  const reader = res.body!.getReader();
  let last = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const now = performance.now();
    const pieces = new TextDecoder()
      .decode(value)
      .split("\n\n")
      .filter((e) => e.startsWith("data: {") && !e.includes('"finish_reason":"length"')).length;
    if (pieces === 0) continue;
    if (last === 0) t.ttft.push(now - start);
    else t.itl.push((now - last) / pieces);
    last = now;
    t.tokens += pieces;
  }
  t.requests++;
}

/** `clients` closed-loop clients for `seconds`, client i on models[i % models.length]. */
async function load(
  url: string,
  clients: number,
  models: string[],
  seconds: number,
  maxTokens: number,
): Promise<Timing> {
  const t: Timing = { ttft: [], itl: [], tokens: 0, seconds: 0, requests: 0 };
  const prompt = Array.from({ length: 16 }, (_, i) => `t${i * 7 + 3}`).join(" ");
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      while (performance.now() < end) await streamOne(url, models[i % models.length]!, prompt, maxTokens, t);
    }),
  );
  t.seconds = (performance.now() - start) / 1000;
  return t;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function rssOf(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/peft_process_resident_bytes (\d+)/.exec(text)![1]) / 2 ** 20;
}

/**
 * The goal's ratio, 8 clients' tokens/s over one client's on the base model, from alternating windows (the load of
 * a shared machine drifts between the table's rows): the median ratio of `rounds` pairs, and its range. Each window
 * follows a second of the same load, so that it measures the steady state, not the change from the other.
 */
async function alternatingRatio(url: string, seconds: number, rounds: number): Promise<string> {
  const ratios: number[] = [];
  const steady = async (clients: number) => {
    await load(url, clients, ["base"], 1, 16);
    return load(url, clients, ["base"], seconds, 16);
  };
  for (let r = 0; r < rounds; r++) {
    const one = await steady(1);
    const eight = await steady(8);
    ratios.push(eight.tokens / eight.seconds / (one.tokens / one.seconds));
  }
  ratios.sort((a, b) => a - b);
  return `${pct(ratios, 50).toFixed(2)}× (${ratios[0]!.toFixed(2)}–${ratios[ratios.length - 1]!.toFixed(2)}× over ${rounds} alternating pairs of ${seconds} s windows)`;
}

/** The rows of one model and weight dtype: 1/8/32 clients over the base model and 1/4/16 adapters. */
async function modelRows(
  o: { log: (line: string) => void; clients: number[]; seconds: number; ratios: string[] },
  model: string,
  dtype: string,
): Promise<string[]> {
  const rows: string[] = [];
  const { url, child } = await startWorker(model, 16, dtype);
  try {
    await load(url, 1, ["base"], 0.5, 4); // warm-up
    let sequential = NaN;
    for (const clients of o.clients) {
      // Warm up this batch size first (its buffer sizes, the JIT): otherwise the first row measured, the base
      // model's, pays for it and the adapters' cost reads low.
      await load(url, clients, ["base"], 1, 4);
      let base = NaN;
      for (const adapters of [0, 1, 4, 16]) {
        const names = adapters === 0 ? ["base"] : Array.from({ length: adapters }, (_, i) => `a${i}`);
        const t = await load(url, clients, names, o.seconds, 16);
        const tps = t.tokens / t.seconds;
        if (adapters === 0) base = tps;
        if (clients === 1 && adapters === 0) sequential = tps;
        const row =
          `| ${model} | ${dtype} | ${clients} | ${adapters === 0 ? "base" : adapters} | ${t.requests} | ` +
          `${pct(t.ttft, 50).toFixed(0)} | ${pct(t.ttft, 99).toFixed(0)} | ` +
          `${pct(t.itl, 50).toFixed(1)} | ${tps.toFixed(1)} | ${(tps / sequential).toFixed(2)}× | ` +
          `${(tps / base).toFixed(2)} |`;
        o.log(row);
        rows.push(row);
      }
    }
    const ratio = `${model} ${dtype}: 8 clients ÷ 1 client, base model: ${await alternatingRatio(url, o.seconds, 4)}`;
    o.log(ratio);
    o.ratios.push(ratio);
  } finally {
    child.kill();
  }
  return rows;
}

/** Run the serve section; returns its markdown. */
export async function serveBench(o: {
  log: (line: string) => void;
  models: string[];
  dtypes: string[];
  clients: number[];
  seconds: number;
  requests: number;
}): Promise<string> {
  const rows = [
    "| model | dtype | clients | adapters | requests | p50 TTFT ms | p99 TTFT ms | p50 ITL ms | " +
      "tokens/s | vs 1 client | vs base |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const ratios: string[] = [];
  for (const model of o.models)
    for (const dtype of o.dtypes) rows.push(...(await modelRows({ ...o, ratios }, model, dtype)));
  const { url, child } = await startWorker("tiny", 4);
  const rss: string[] = [];
  try {
    const per = Math.ceil(o.requests / 8);
    let done = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const t: Timing = { ttft: [], itl: [], tokens: 0, seconds: 0, requests: 0 };
        for (let k = 0; k < per; k++) {
          await streamOne(url, i % 2 ? `a${i % 4}` : "base", "t1 t2 t3 t4", 2, t);
          // The RSS curve: after the first 100 requests, then every tenth of the run.
          if (++done === 100 || done % Math.max(1, Math.floor(o.requests / 10)) === 0)
            rss.push(`${done}: ${(await rssOf(url)).toFixed(0)} MiB`);
        }
      }),
    );
  } finally {
    child.kill();
  }
  o.log(`RSS ${rss.join(", ")}`);
  return (
    `${rows.join("\n")}\n\n${ratios.map((r) => `- ${r}`).join("\n")}\n\nServer RSS over ${o.requests} short requests (tiny model, 8 ` +
    `clients, 4 adapters + base), after request n: ${rss.join(", ")}\n`
  );
}
