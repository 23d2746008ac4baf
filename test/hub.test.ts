/**
 * Loading by Hub id against a local mock Hub (test/hub-server.ts, 127.0.0.1): downloads into huggingface_hub's
 * cache layout, cache reuse (requests counted), resumed downloads, offline mode, gated and missing repos, a cache
 * folder laid out by hand as Python's snapshot_download lays it out, and pushToHub through the commit API.
 * The reference for every loaded model or adapter is the same fixture loaded from its local folder.
 */
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { noGrad } from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { Linear4bit } from "../src/nn/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { AutoPeftModelForCausalLM, PeftModel } from "../src/peft/index.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { HubError } from "../src/errors.js";
import { hfHubDownload } from "../src/io/hub.js";
import { resolveConfigIds } from "../src/cli/hub-args.js";
import { maxAbsDiff, modelDir, peftDir, readInputs } from "./golden.js";
import { bpeTokenizerJson } from "./tokenizer-fixtures.js";
import { startMockHub, type LoggedRequest, type MockHub, type MockRepo } from "./hub-server.js";

const TOKEN = "hf_test_token_with_access";
const files = (dir: string, names: string[]): Record<string, Uint8Array> =>
  Object.fromEntries(names.map((n) => [n, new Uint8Array(readFileSync(join(dir, n)))]));
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Uint8Array) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

const LLAMA = modelDir("llama");
const TOKENIZER_JSON = new TextEncoder().encode(JSON.stringify(bpeTokenizerJson("gpt2")));
const llamaFiles = (): Record<string, Uint8Array> => ({
  ...files(LLAMA, ["config.json", "generation_config.json", "model.safetensors"]),
  "tokenizer.json": TOKENIZER_JSON,
  // Not needed by a model load: must never be requested.
  "expected.safetensors": new Uint8Array(readFileSync(join(LLAMA, "expected.safetensors"))),
});
const adapterFiles = (): Record<string, Uint8Array> => {
  const dir = join(peftDir("llama-lora"), "adapter");
  const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
  config["base_model_name_or_path"] = "tiny/llama";
  return {
    ...files(dir, ["adapter_model.safetensors", "README.md"]),
    "adapter_config.json": new TextEncoder().encode(JSON.stringify(config)),
  };
};
const REPOS: MockRepo[] = [
  { id: "tiny/llama", commits: [{ files: llamaFiles(), refs: ["main", "v1.0"] }] },
  {
    id: "tiny/llama-sharded",
    commits: [
      {
        files: files(modelDir("llama-sharded"), [
          "config.json",
          "model.safetensors.index.json",
          ...[1, 2, 3].map((i) => `model-0000${i}-of-00003.safetensors`),
        ]),
        refs: ["main"],
      },
    ],
  },
  { id: "tiny/llama-lora", commits: [{ files: adapterFiles(), refs: ["main"] }] },
  {
    id: "tiny/gated",
    commits: [{ files: files(LLAMA, ["config.json", "model.safetensors"]), refs: ["main"] }],
    gatedToken: TOKEN,
  },
];

const HUB_ENV = [
  "HF_ENDPOINT",
  "HF_HUB_CACHE",
  "HF_HOME",
  "HF_TOKEN",
  "HF_HUB_OFFLINE",
  "HF_HUB_DISABLE_PROGRESS_BARS",
];
let hub: MockHub;
let cache = "";
const saved: Record<string, string | undefined> = {};

function logits(model: PreTrainedModel | PeftModel): ReturnType<typeof readInputs>[string] {
  const inputs = readInputs(LLAMA);
  return (
    noGrad(() =>
      model.forward({ inputIds: inputs["inputIds"]!, attentionMask: inputs["attentionMask"]! }),
    ) as ModelOutput
  ).logits;
}
const local = () => AutoModelForCausalLM.fromPretrained(LLAMA);
const summary = (log: LoggedRequest[]) => log.map((r) => `${r.method} ${r.path}${r.range ? ` ${r.range}` : ""}`);
const repoFolder = (id: string) => join(cache, `models--${id.replace("/", "--")}`);

function expectHubError(fn: () => unknown, reason: string, message: RegExp, hint?: RegExp): HubError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof HubError, `expected a HubError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  assert.equal(caught.code, "HUB_ERROR");
  assert.match(caught.message, message);
  if (hint) assert.match(caught.hint ?? "", hint);
  return caught;
}

before(async () => {
  for (const k of HUB_ENV) saved[k] = process.env[k];
  hub = await startMockHub(REPOS);
});
after(async () => {
  await hub.stop();
  for (const [k, v] of Object.entries(saved))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});
beforeEach(async () => {
  cache = mkdtempSync(join(tmpdir(), "peft-ts-hub-"));
  for (const k of HUB_ENV) delete process.env[k];
  process.env["HF_ENDPOINT"] = hub.url;
  process.env["HF_HUB_CACHE"] = cache;
  process.env["HF_HOME"] = join(cache, "home"); // no token file from the machine
  process.env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1";
  await hub.takeRequests();
});
afterEach(() => rmSync(cache, { recursive: true, force: true }));

describe("loading by Hub id", () => {
  it("downloads a model into huggingface_hub's cache layout; its logits equal the local folder's", async () => {
    const model = AutoModelForCausalLM.fromPretrained("tiny/llama");
    assert.equal(maxAbsDiff(logits(model), logits(local())), 0);
    assert.equal(model.nameOrPath, "tiny/llama", "adapters must record the id as base_model_name_or_path");
    const log = summary(await hub.takeRequests());
    const sha = readFileSync(join(repoFolder("tiny/llama"), "refs", "main"), "utf8");
    assert.match(sha, /^[0-9a-f]{40}$/);
    const weights = new Uint8Array(readFileSync(join(LLAMA, "model.safetensors")));
    assert.deepEqual(log, [
      "GET /api/models/tiny/llama/revision/main",
      `HEAD /tiny/llama/resolve/${sha}/config.json`,
      `GET /tiny/llama/resolve/${sha}/config.json`,
      `HEAD /tiny/llama/resolve/${sha}/generation_config.json`,
      `GET /tiny/llama/resolve/${sha}/generation_config.json`,
      `HEAD /tiny/llama/resolve/${sha}/model.safetensors`,
      `GET /cdn/${sha256(weights)}`,
    ]);
    // Python's layout: blobs named by etag (git sha1 for regular files, sha256 for LFS), relative symlinks.
    const snap = join(repoFolder("tiny/llama"), "snapshots", sha);
    assert.equal(readlinkSync(join(snap, "model.safetensors")), join("..", "..", "blobs", sha256(weights)));
    const config = new Uint8Array(readFileSync(join(LLAMA, "config.json")));
    assert.equal(readlinkSync(join(snap, "config.json")), join("..", "..", "blobs", gitSha1(config)));
    assert.deepEqual(readdirSync(snap).sort(), ["config.json", "generation_config.json", "model.safetensors"]);
  });

  it("reuses the cache: a second load asks only for the revision's commit, offline none at all", async () => {
    AutoModelForCausalLM.fromPretrained("tiny/llama");
    await hub.takeRequests();
    const again = AutoModelForCausalLM.fromPretrained("tiny/llama");
    assert.deepEqual(summary(await hub.takeRequests()), ["GET /api/models/tiny/llama/revision/main"]);
    assert.equal(maxAbsDiff(logits(again), logits(local())), 0);
    AutoModelForCausalLM.fromPretrained("tiny/llama", { localFilesOnly: true });
    process.env["HF_HUB_OFFLINE"] = "1";
    AutoModelForCausalLM.fromPretrained("tiny/llama");
    assert.deepEqual(await hub.takeRequests(), []);
  });

  it("loads a sharded model (index + shards) and a tag revision", async () => {
    const sharded = AutoModelForCausalLM.fromPretrained("tiny/llama-sharded");
    const reference = AutoModelForCausalLM.fromPretrained(modelDir("llama-sharded"));
    assert.equal(maxAbsDiff(logits(sharded), logits(reference)), 0);
    const tagged = AutoModelForCausalLM.fromPretrained("tiny/llama", { revision: "v1.0" });
    assert.equal(maxAbsDiff(logits(tagged), logits(local())), 0);
    assert.ok(existsSync(join(repoFolder("tiny/llama"), "refs", "v1.0")));
  });

  it("resumes a download cut off mid-body with a Range request, and verifies it", async () => {
    const cutting = await startMockHub(REPOS, { cutFirstDownload: true });
    try {
      const model = AutoModelForCausalLM.fromPretrained("tiny/llama", { endpoint: cutting.url });
      assert.equal(maxAbsDiff(logits(model), logits(local())), 0);
      const weights = readFileSync(join(LLAMA, "model.safetensors"));
      const cdn = summary(await cutting.takeRequests()).filter((r) => r.includes("/cdn/"));
      assert.deepEqual(cdn, [
        `GET /cdn/${sha256(weights)}`,
        `GET /cdn/${sha256(weights)} bytes=${weights.length >> 1}-`,
      ]);
    } finally {
      await cutting.stop();
    }
  });

  it("continues an .incomplete file left by an earlier run, and rejects one whose bytes are wrong", async () => {
    const weights = new Uint8Array(readFileSync(join(LLAMA, "model.safetensors")));
    const blobs = join(repoFolder("tiny/llama"), "blobs");
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, 1000));
    AutoModelForCausalLM.fromPretrained("tiny/llama");
    assert.ok(summary(await hub.takeRequests()).includes(`GET /cdn/${sha256(weights)} bytes=1000-`));
    assert.deepEqual(new Uint8Array(readFileSync(join(blobs, sha256(weights)))), weights);

    rmSync(repoFolder("tiny/llama"), { recursive: true });
    mkdirSync(blobs, { recursive: true });
    const wrong = weights.slice(0, 1000).fill(7);
    writeFileSync(join(blobs, `${sha256(weights)}.incomplete`), wrong);
    expectHubError(
      () => AutoModelForCausalLM.fromPretrained("tiny/llama"),
      "corrupt-download",
      /model\.safetensors .* corrupt: its hash is/,
      /run again/,
    );
    assert.ok(!existsSync(join(blobs, `${sha256(weights)}.incomplete`)), "the corrupt partial file is deleted");
    assert.ok(!existsSync(join(blobs, sha256(weights))));
  });

  it("offline: works from the cache; a repo that is not cached fails naming what is cached", async () => {
    process.env["HF_HUB_OFFLINE"] = "1";
    expectHubError(
      () => AutoModelForCausalLM.fromPretrained("tiny/llama"),
      "offline-not-cached",
      /offline mode: .*tiny\/llama@main is not in the cache \(nothing is cached/,
      /unset HF_HUB_OFFLINE/,
    );
    delete process.env["HF_HUB_OFFLINE"];
    AutoModelForCausalLM.fromPretrained("tiny/llama");
    process.env["HF_HUB_OFFLINE"] = "1";
    await hub.takeRequests();
    assert.equal(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained("tiny/llama")), logits(local())), 0);
    expectHubError(
      () => AutoModelForCausalLM.fromPretrained("tiny/llama", { revision: "v2" }),
      "offline-not-cached",
      /tiny\/llama@v2 is not in the cache \(cached in .*models--tiny--llama: main → [0-9a-f]{40} \(config\.json, generation_config\.json, model/,
    );
    assert.deepEqual(await hub.takeRequests(), []);
  });

  it(
    "no network: uses the cached revision with a warning, else points to offline mode and " + "lists the cache",
    async () => {
      AutoModelForCausalLM.fromPretrained("tiny/llama");
      const closed = await startMockHub([]);
      const deadUrl = closed.url;
      await closed.stop();
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on("warning", onWarning);
      try {
        const model = AutoModelForCausalLM.fromPretrained("tiny/llama", { endpoint: deadUrl });
        assert.equal(maxAbsDiff(logits(model), logits(local())), 0);
        await new Promise((r) => setImmediate(r));
        assert.ok(
          warnings.some((w) => /cannot reach .*using the cached snapshot of tiny\/llama@main/.test(w)),
          warnings.join("\n"),
        );
      } finally {
        process.off("warning", onWarning);
      }
      expectHubError(
        () => AutoModelForCausalLM.fromPretrained("tiny/llama-sharded", { endpoint: deadUrl }),
        "network",
        /cannot reach http:\/\/127\.0\.0\.1:\d+ .*nothing is cached for it/,
        /HF_HUB_OFFLINE=1/,
      );
    },
  );

  it(
    "gated repos: 401 without a token and 403 with a token lacking access say how to get " +
      "access; HF_TOKEN and the token file work",
    async () => {
      const e401 = expectHubError(
        () => AutoModelForCausalLM.fromPretrained("tiny/gated"),
        "gated",
        /tiny\/gated is a gated repo and no token was sent/,
        new RegExp(`open ${hub.url}/tiny/gated .*accept its conditions.*HF_TOKEN`),
      );
      assert.equal(e401.status, 401);
      const e403 = expectHubError(
        () => AutoModelForCausalLM.fromPretrained("tiny/gated", { token: "hf_other" }),
        "gated",
        /your token has no access/,
        /use a token of that account/,
      );
      assert.equal(e403.status, 403);
      await hub.takeRequests();
      process.env["HF_TOKEN"] = TOKEN;
      assert.equal(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained("tiny/gated")), logits(local())), 0);
      assert.ok(
        (await hub.takeRequests())
          .filter((r) => r.path.includes("/resolve/"))
          .every((r) => r.auth === `Bearer ${TOKEN}`),
      );
      delete process.env["HF_TOKEN"];
      rmSync(repoFolder("tiny/gated"), { recursive: true });
      mkdirSync(process.env["HF_HOME"]!, { recursive: true });
      writeFileSync(join(process.env["HF_HOME"]!, "token"), `${TOKEN}\n`);
      assert.equal(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained("tiny/gated")), logits(local())), 0);
    },
  );

  it("404s say whether the repo, the revision or the file is missing", async () => {
    expectHubError(
      () => AutoModelForCausalLM.fromPretrained("tiny/nope"),
      "repo-not-found",
      /tiny\/nope is not a local folder, and the Hub .* has no repo tiny\/nope/,
      /check the id/,
    );
    expectHubError(
      () => AutoModelForCausalLM.fromPretrained("tiny/llama", { revision: "v9" }),
      "revision-not-found",
      /revision "v9" does not exist in tiny\/llama \(the repo exists\)/,
    );
    await assert.rejects(
      hfHubDownload("tiny/llama", "nope.json"),
      (err: unknown) =>
        err instanceof HubError &&
        err.reason === "entry-not-found" &&
        /tiny\/llama has no file nope\.json at revision "main"/.test(err.message),
    );
    // Remembered as huggingface_hub does, so transformers (Python) skips the lookup next time.
    const sha = readFileSync(join(repoFolder("tiny/llama"), "refs", "main"), "utf8");
    assert.ok(existsSync(join(repoFolder("tiny/llama"), ".no_exist", sha, "nope.json")));
    expectHubError(
      () => PeftModel.fromPretrained(local(), "tiny/llama"),
      "entry-not-found",
      /tiny\/llama@main has no adapter_config\.json, so it is not an adapter repo/,
    );
  });

  it("finds a cache folder laid out by hand as Python's snapshot_download lays it out, with no request", async () => {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const folder = repoFolder("py/llama");
    mkdirSync(join(folder, "blobs"), { recursive: true });
    mkdirSync(join(folder, "snapshots", commit), { recursive: true });
    mkdirSync(join(folder, "refs"), { recursive: true });
    writeFileSync(join(folder, "refs", "main"), commit); // no trailing newline, as huggingface_hub writes it
    for (const name of ["config.json", "model.safetensors"]) {
      const bytes = new Uint8Array(readFileSync(join(LLAMA, name)));
      const blob = name.endsWith(".safetensors") ? sha256(bytes) : gitSha1(bytes);
      writeFileSync(join(folder, "blobs", blob), bytes);
      symlinkSync(join("..", "..", "blobs", blob), join(folder, "snapshots", commit, name));
    }
    process.env["HF_HUB_OFFLINE"] = "1";
    assert.equal(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained("py/llama")), logits(local())), 0);
    delete process.env["HF_HUB_OFFLINE"];
    assert.equal(
      maxAbsDiff(
        logits(AutoModelForCausalLM.fromPretrained("py/llama", { localFilesOnly: true, revision: commit })),
        logits(local()),
      ),
      0,
    );
    assert.deepEqual(await hub.takeRequests(), []);
    assert.ok(lstatSync(join(folder, "snapshots", commit, "config.json")).isSymbolicLink());
  });

  it("a local folder wins over an id of the same spelling", async () => {
    const cwd = process.cwd();
    const root = mkdtempSync(join(tmpdir(), "peft-ts-hub-local-"));
    try {
      mkdirSync(join(root, "tiny", "llama"), { recursive: true });
      for (const n of ["config.json", "model.safetensors"])
        writeFileSync(join(root, "tiny", "llama", n), readFileSync(join(LLAMA, n)));
      process.chdir(root);
      AutoModelForCausalLM.fromPretrained("tiny/llama");
      assert.deepEqual(await hub.takeRequests(), []);
    } finally {
      process.chdir(cwd);
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("tokenizers, adapters and AutoPeftModel load by id (the adapter's base model too)", async () => {
    const tok = await AutoTokenizer.fromPretrained("tiny/llama");
    const tokSync = AutoTokenizer.fromPretrainedSync("tiny/llama", { padToken: "!" });
    assert.deepEqual(tok.encode("hello world"), tokSync.encode("hello world"));
    assert.ok(tok.encode("hello world").length > 0);

    const adapterDir = join(peftDir("llama-lora"), "adapter");
    const reference = logits(PeftModel.fromPretrained(local(), adapterDir));
    assert.equal(maxAbsDiff(logits(PeftModel.fromPretrained(local(), "tiny/llama-lora")), reference), 0);
    const auto = AutoPeftModelForCausalLM.fromPretrained("tiny/llama-lora");
    assert.equal(maxAbsDiff(logits(auto), reference), 0);
    assert.equal(auto.getBaseModel().nameOrPath, "tiny/llama");
    // The base model's load options reach it (as peft passes torch_dtype on): 4-bit Linear layers, the rest bfloat16.
    const quantized = AutoPeftModelForCausalLM.fromPretrained("tiny/llama-lora", {
      dtype: "bfloat16",
      quantizationConfig: { load_in_4bit: true },
    });
    const base = quantized.getBaseModel();
    assert.ok(base.modules().some((m) => m instanceof Linear4bit));
    assert.equal(base.getInputEmbeddings().weight.dtype, "bfloat16");
  });
});

describe("uploading through the commit API", () => {
  const adapterModel = () => PeftModel.fromPretrained(local(), join(peftDir("llama-lora"), "adapter"));

  it(
    "PeftModel.pushToHub creates the repo, uploads the weights through LFS and commits the " +
      "files savePretrained writes",
    async () => {
      // IA3, not the LoRA adapter the mock Hub already holds: its weights must really travel.
      const peft = PeftModel.fromPretrained(local(), join(peftDir("llama-ia3"), "adapter"));
      const info = await peft.pushToHub("me/llama-lora", {
        token: TOKEN,
        private: true,
        commitMessage: "first adapter",
      });
      const log = summary(await hub.takeRequests());
      const saved = mkdtempSync(join(tmpdir(), "peft-ts-hub-saved-"));
      try {
        peft.savePretrained(saved);
        const weights = new Uint8Array(readFileSync(join(saved, "adapter_model.safetensors")));
        assert.deepEqual(log, [
          "POST /api/repos/create",
          "POST /api/models/me/llama-lora/preupload/main",
          "POST /me/llama-lora.git/info/lfs/objects/batch",
          `PUT /lfs-upload/${sha256(weights)}`,
          "POST /lfs-verify",
          "POST /api/models/me/llama-lora/commit/main",
        ]);
        const repo = (await hub.repos())["me/llama-lora"]!;
        assert.equal(repo.private, true);
        assert.equal(repo.refs["main"], info.commitOid);
        const uploaded = repo.commits[info.commitOid]!;
        assert.deepEqual(Object.keys(uploaded).sort(), readdirSync(saved).sort());
        for (const name of readdirSync(saved))
          assert.deepEqual(new Uint8Array(uploaded[name]!), new Uint8Array(readFileSync(join(saved, name))), name);
      } finally {
        rmSync(saved, { recursive: true, force: true });
      }
      // And back down: the uploaded adapter gives the same logits.
      assert.equal(maxAbsDiff(logits(PeftModel.fromPretrained(local(), "me/llama-lora")), logits(peft)), 0);
    },
  );

  it("a merged model pushes as a plain checkpoint; pushing it again uploads no LFS bytes", async () => {
    process.env["HF_TOKEN"] = TOKEN;
    const merged = adapterModel().mergeAndUnload();
    await merged.pushToHub("me/merged");
    assert.equal(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained("me/merged")), logits(merged)), 0);
    await hub.takeRequests();
    await merged.pushToHub("me/merged", { commitMessage: "again" });
    assert.ok(!summary(await hub.takeRequests()).some((r) => r.startsWith("PUT ")), "the Hub already has the blob");
  });

  it("without a token, or with a refused one, says how to get a write token", async () => {
    await assert.rejects(
      adapterModel().pushToHub("me/x"),
      (err: unknown) =>
        err instanceof HubError &&
        err.reason === "unauthorized" &&
        /needs a token with write access/.test(err.message) &&
        /HF_TOKEN/.test(err.hint ?? ""),
    );
  });
});

describe("the peft command with Hub ids", () => {
  const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const peftCli = (cwd: string, ...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: "utf8", timeout: 120_000, env: process.env });

  it(
    "a train config's model_name_or_path id becomes its snapshot folder; models loaded from it " + "record the id",
    async () => {
      const cfg = { model_name_or_path: "tiny/llama", tokenizer: "tiny/llama" };
      resolveConfigIds(cfg);
      assert.equal(cfg.tokenizer, cfg.model_name_or_path);
      assert.match(cfg.model_name_or_path, /models--tiny--llama[\\/]snapshots[\\/][0-9a-f]{40}$/);
      assert.ok(
        existsSync(join(cfg.model_name_or_path, "tokenizer.json")) &&
          existsSync(join(cfg.model_name_or_path, "model.safetensors")),
      );
      assert.equal(
        AutoModelForCausalLM.fromPretrained(cfg.model_name_or_path).nameOrPath,
        "tiny/llama",
        "the adapter's base_model_name_or_path",
      );
    },
  );

  it("peft merge takes --model/--adapter ids; peft push uploads the result", async () => {
    const work = mkdtempSync(join(tmpdir(), "peft-ts-hub-cli-"));
    try {
      const merge = peftCli(work, "merge", "--model", "tiny/llama", "--adapter", "tiny/llama-lora", "--out", "merged");
      assert.equal(merge.status, 0, merge.stderr);
      const expected = logits(
        PeftModel.fromPretrained(local(), join(peftDir("llama-lora"), "adapter")).mergeAndUnload(),
      );
      assert.ok(maxAbsDiff(logits(AutoModelForCausalLM.fromPretrained(join(work, "merged"))), expected) < 1e-6);
      assert.ok(existsSync(join(work, "merged", "tokenizer.json")), "the model repo's tokenizer came along");

      const denied = peftCli(work, "push", "merged", "me/merged-cli");
      assert.equal(denied.status, 1);
      assert.match(
        denied.stderr,
        /^error: uploading to me\/merged-cli needs a token with write access.*\nhint: create a write token/m,
      );
      process.env["HF_TOKEN"] = TOKEN;
      const pushed = peftCli(work, "push", "merged", "me/merged-cli", "--message", "merged by the CLI");
      assert.equal(pushed.status, 0, pushed.stderr);
      assert.match(
        pushed.stdout,
        /pushed model merged to me\/merged-cli: http:\/\/127\.0\.0\.1:\d+\/me\/merged-cli\/commit\/[0-9a-f]{40}/,
      );
      const repo = (await hub.repos())["me/merged-cli"]!;
      assert.deepEqual(Object.keys(repo.commits[repo.refs["main"]!]!).sort(), readdirSync(join(work, "merged")).sort());

      const missing = peftCli(work, "generate", "--model", "tiny/nope", "--prompt", "x");
      assert.equal(missing.status, 1);
      assert.match(
        missing.stderr,
        /^error: tiny\/nope is not a local folder, and the Hub .* has no repo tiny\/nope.*\nhint: check the id/m,
      );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
