/**
 * Uploading to the Hub through its commit API, as huggingface_hub's create_repo / create_commit / upload_folder:
 * create the repo (POST /api/repos/create; 409 = exists), ask which files go through LFS (POST
 * /api/models/{id}/preupload/{rev}), upload those through the LFS batch API (POST {id}.git/info/lfs/objects/batch,
 * PUT to the returned address, POST verify), then commit everything in one NDJSON request
 * (POST /api/models/{id}/commit/{rev}): a header line, then one line per regular file (base64) or LFS pointer.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HubError } from "../errors.js";
import { hubEndpoint, hubToken, snapshotFiles, type HubOptions } from "./hub-cache.js";
import { errorFromResponse, hubFetch, hubHeaders, type HubTarget } from "./hub-http.js";

/** Options of uploads: the Hub options plus the commit's description and the repo's visibility. */
export interface PushOptions extends Omit<HubOptions, "localFilesOnly" | "cacheDir"> {
  /** Create the repo private (when it does not exist yet). Default false, as huggingface_hub. */
  private?: boolean;
  /** The commit's title (default "Upload folder using peft-ts"). */
  commitMessage?: string;
  /** The commit's longer description. */
  commitDescription?: string;
}

/** What a commit made. */
export interface CommitInfo {
  commitOid: string;
  commitUrl: string;
}

/** One file to commit: its path in the repo and its bytes. */
export interface CommitFile {
  path: string;
  bytes: Uint8Array;
}

function writeTarget(repoId: string, opts: PushOptions): HubTarget {
  const token = hubToken(opts);
  if (!token) {
    throw new HubError(
      "unauthorized",
      `uploading to ${repoId} needs a token with write access, and none was found`,
      "create a write token at https://huggingface.co/settings/tokens and set HF_TOKEN=hf_… (or " +
        "pass { token }, or run `huggingface-cli login`)",
    );
  }
  return { repoId, revision: opts.revision ?? "main", endpoint: hubEndpoint(opts), token, upload: true };
}

async function postJson(
  url: string,
  body: unknown,
  t: HubTarget,
  extra: Record<string, string> = {},
): Promise<Response> {
  return hubFetch(
    url,
    {
      method: "POST",
      headers: hubHeaders(t.token, { "content-type": "application/json", ...extra }),
      body: JSON.stringify(body),
    },
    t,
  );
}

async function expectOk(res: Response, t: HubTarget): Promise<unknown> {
  if (!res.ok) throw errorFromResponse(res, t);
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

/** Create a model repo ("org/name" or "name" for the token's user); an existing repo is fine. Returns its URL. */
export async function createRepo(repoId: string, opts: PushOptions = {}): Promise<string> {
  const t = writeTarget(repoId, opts);
  const [organization, name] = repoId.includes("/") ? repoId.split("/", 2) : [undefined, repoId];
  const res = await postJson(
    `${t.endpoint}/api/repos/create`,
    { name, organization, private: opts.private ?? false },
    t,
  );
  if (res.status !== 409) await expectOk(res, t);
  return `${t.endpoint}/${repoId}`;
}

interface LfsObject {
  oid: string;
  size: number;
  actions?: {
    upload?: { href: string; header?: Record<string, string> };
    verify?: { href: string; header?: Record<string, string> };
  };
  error?: { code: number; message: string };
}

/** Upload the LFS files through the batch API (basic transfer); objects the Hub already has get no upload action. */
async function uploadLfs(files: CommitFile[], oids: Map<string, string>, t: HubTarget): Promise<void> {
  if (files.length === 0) return;
  const res = await postJson(
    `${t.endpoint}/${t.repoId}.git/info/lfs/objects/batch`,
    {
      operation: "upload",
      transfers: ["basic", "multipart"],
      hash_algo: "sha256",
      ref: { name: t.revision },
      objects: files.map((f) => ({ oid: oids.get(f.path)!, size: f.bytes.length })),
    },
    t,
    { accept: "application/vnd.git-lfs+json" },
  );
  const { objects } = (await expectOk(res, t)) as { objects: LfsObject[] };
  for (const o of objects) {
    const file = files.find((f) => oids.get(f.path) === o.oid)!;
    if (o.error)
      throw new HubError(
        "http",
        `the Hub refused the LFS upload of ${file.path}: ${o.error.message} (${o.error.code})`,
        "check the file and retry",
      );
    const upload = o.actions?.upload;
    if (!upload) continue;
    if (upload.header?.["chunk_size"] !== undefined) {
      throw new HubError(
        "http",
        `the Hub asked for a multipart upload of ${file.path} (${file.bytes.length} bytes), which peft-ts does not do`,
        "upload this file with huggingface_hub (huggingface-cli upload); smaller files go through peft-ts",
      );
    }
    // The upload address is signed: no token (huggingface_hub sends none there either).
    const put = await hubFetch(
      upload.href,
      { method: "PUT", headers: { ...upload.header }, body: Buffer.from(file.bytes) },
      t,
    );
    await expectOk(put, { ...t, filename: file.path });
    if (o.actions?.verify) {
      await expectOk(
        await postJson(o.actions.verify.href, { oid: o.oid, size: o.size }, t, o.actions.verify.header ?? {}),
        { ...t, filename: file.path },
      );
    }
  }
}

/** Commit files to a repo branch in one commit (huggingface_hub's create_commit with CommitOperationAdd). */
export async function createCommit(repoId: string, files: CommitFile[], opts: PushOptions = {}): Promise<CommitInfo> {
  const t = writeTarget(repoId, opts);
  const rev = encodeURIComponent(t.revision);
  const pre = await postJson(
    `${t.endpoint}/api/models/${repoId}/preupload/${rev}`,
    {
      files: files.map((f) => ({
        path: f.path,
        sample: Buffer.from(f.bytes.subarray(0, 512)).toString("base64"),
        size: f.bytes.length,
      })),
    },
    t,
  );
  const modes = new Map(
    ((await expectOk(pre, t)) as { files: { path: string; uploadMode: string; shouldIgnore?: boolean }[] }).files.map(
      (f) => [f.path, f],
    ),
  );
  const kept = files.filter((f) => !modes.get(f.path)?.shouldIgnore);
  // Empty files cannot go through LFS (huggingface_hub sends them as regular files too).
  const lfs = kept.filter((f) => modes.get(f.path)?.uploadMode === "lfs" && f.bytes.length > 0);
  const oids = new Map(lfs.map((f) => [f.path, createHash("sha256").update(f.bytes).digest("hex")]));
  await uploadLfs(lfs, oids, t);
  const lines = [
    {
      key: "header",
      value: {
        summary: opts.commitMessage ?? "Upload folder using peft-ts",
        description: opts.commitDescription ?? "",
      },
    },
    ...kept.map((f) =>
      oids.has(f.path)
        ? { key: "lfsFile", value: { path: f.path, algo: "sha256", oid: oids.get(f.path), size: f.bytes.length } }
        : {
            key: "file",
            value: { content: Buffer.from(f.bytes).toString("base64"), path: f.path, encoding: "base64" },
          },
    ),
  ];
  const res = await hubFetch(
    `${t.endpoint}/api/models/${repoId}/commit/${rev}`,
    {
      method: "POST",
      headers: hubHeaders(t.token, { "content-type": "application/x-ndjson" }),
      body: `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`,
    },
    t,
  );
  const answer = (await expectOk(res, t)) as { commitOid?: string; commitUrl?: string };
  return { commitOid: String(answer.commitOid ?? ""), commitUrl: String(answer.commitUrl ?? "") };
}

/** Upload every file of a local folder (dot files left out) to a repo, creating the repo when needed. */
export async function uploadFolder(repoId: string, folder: string, opts: PushOptions = {}): Promise<CommitInfo> {
  const files = snapshotFiles(folder).filter((p) => !p.split("/").some((part) => part.startsWith(".")));
  if (files.length === 0)
    throw new HubError(
      "entry-not-found",
      `nothing to upload: ${folder} has no files`,
      "save the model or adapter into the folder first",
    );
  await createRepo(repoId, opts);
  return createCommit(
    repoId,
    files.map((path) => ({ path, bytes: new Uint8Array(readFileSync(join(folder, path))) })),
    opts,
  );
}

/** Save something into a temporary folder with `save`, upload the folder, remove it (what pushToHub methods do). */
export async function pushSaved(
  repoId: string,
  save: (dir: string) => void,
  opts: PushOptions = {},
): Promise<CommitInfo> {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-push-"));
  try {
    save(dir);
    return await uploadFolder(repoId, dir, opts);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
