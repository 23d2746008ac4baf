/**
 * Loading by Hub id, as huggingface_hub does: `hfHubDownload` (one file) and `snapshotDownload` (the files of a
 * repo that match some patterns) fill huggingface_hub's cache (see hub-cache.ts), so a model Python downloaded is
 * reused here and the other way round. `resolvePretrained` is what every `fromPretrained` calls: a local folder
 * wins, else the name is a repo id and the files that kind of folder needs are fetched (or found in the cache).
 */
import { copyFileSync, existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { HubError } from "../errors.js";
import {
  COMMIT_HASH,
  cachedCommit,
  describeCache,
  hubEndpoint,
  hubToken,
  isOffline,
  isRepoId,
  repoCacheFolder,
  writeRef,
  type HubOptions,
} from "./hub-cache.js";
import {
  downloadBlob,
  errorFromResponse,
  fileMetadata,
  hubFetch,
  hubHeaders,
  type FileMetadata,
  type HubTarget,
} from "./hub-http.js";

export { hubCacheDir, type HubOptions } from "./hub-cache.js";

/** What kind of folder a name stands for, and so which of a repo's files are fetched. */
export type PretrainedKind = "model" | "tokenizer" | "adapter";

/** The files each kind needs (fnmatch patterns, as snapshot_download's allow_patterns) and the one it cannot do without. */
export const PRETRAINED_FILES: Record<PretrainedKind, { patterns: readonly string[]; required: string }> = {
  model: {
    patterns: [
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "model.safetensors.index.json",
      "model-*-of-*.safetensors",
    ],
    required: "config.json",
  },
  tokenizer: {
    patterns: ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"],
    required: "tokenizer.json",
  },
  adapter: { patterns: ["adapter_config.json", "adapter_model.safetensors"], required: "adapter_config.json" },
};

/** Warnings of a resolution (a cached copy used because the Hub could not be reached); printed by the caller. */
export type WarningSink = (message: string) => void;

function target(repoId: string, revision: string, opts: HubOptions, filename?: string): HubTarget {
  const token = hubToken(opts);
  return {
    repoId,
    revision,
    endpoint: hubEndpoint(opts),
    ...(filename !== undefined ? { filename } : {}),
    ...(token ? { token } : {}),
  };
}

/** The resolve URL of a file, `{endpoint}/{repo}/resolve/{revision}/{file}` (huggingface_hub's hf_hub_url). */
export function hubFileUrl(repoId: string, filename: string, revision: string, endpoint: string): string {
  return `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${filename.split("/").map(encodeURIComponent).join("/")}`;
}

/** Link a snapshot entry to its blob with a relative symlink (copy where symlinks are not allowed, as Windows). */
function linkPointer(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  try {
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return;
    copyFileSync(blob, pointer);
  }
}

function notCached(repoId: string, revision: string, what: string, opts: HubOptions, cause?: HubError): HubError {
  const cache = describeCache(repoCacheFolder(repoId, opts));
  if (cause) {
    return new HubError(
      cause.reason,
      `${cause.message}, and ${what} of ${repoId}@${revision} is not in the cache (${cache})`,
      cause.hint,
      cause.status,
    );
  }
  return new HubError(
    "offline-not-cached",
    `offline mode: ${what} of ${repoId}@${revision} is not in the cache (${cache})`,
    "download it once while online (unset HF_HUB_OFFLINE, drop localFilesOnly), or pick a revision listed as cached",
  );
}

/** A cached file of a revision, if there is one. */
function cachedFile(folder: string, revision: string, filename: string): string | undefined {
  const commit = cachedCommit(folder, revision);
  const path = commit && join(folder, "snapshots", commit, filename);
  return path && existsSync(path) ? path : undefined;
}

/**
 * Download one file of a model repo into the cache (huggingface_hub's hf_hub_download) and return its snapshot
 * path. A commit revision already cached makes no request; offline, the cache answers; otherwise a HEAD says
 * which commit and blob the revision has now, and only a missing blob is downloaded.
 */
export async function hfHubDownload(
  repoId: string,
  filename: string,
  opts: HubOptions = {},
  warn: WarningSink = () => {},
): Promise<string> {
  const revision = opts.revision ?? "main";
  const folder = repoCacheFolder(repoId, opts);
  if (COMMIT_HASH.test(revision) && existsSync(join(folder, "snapshots", revision, filename)))
    return join(folder, "snapshots", revision, filename);
  if (isOffline(opts)) {
    const cached = cachedFile(folder, revision, filename);
    if (cached) return cached;
    throw notCached(repoId, revision, filename, opts);
  }
  const t = target(repoId, revision, opts, filename);
  const url = hubFileUrl(repoId, filename, revision, t.endpoint);
  let meta: FileMetadata;
  try {
    meta = await fileMetadata(url, t);
  } catch (err) {
    if (!(err instanceof HubError)) throw err;
    if (err.reason === "entry-not-found") rememberMissing(folder, revision, filename, err);
    if (err.reason === "network" || err.reason === "http") {
      const cached = cachedFile(folder, revision, filename);
      if (cached) {
        warn(`${err.message}; using the cached ${filename} of ${repoId}@${revision}`);
        return cached;
      }
      throw notCached(repoId, revision, filename, opts, err);
    }
    throw err;
  }
  writeRef(folder, revision, meta.commit);
  const pointer = join(folder, "snapshots", meta.commit, filename);
  if (existsSync(pointer)) return pointer;
  const blob = join(folder, "blobs", meta.etag);
  if (!existsSync(blob)) {
    mkdirSync(dirname(blob), { recursive: true });
    await downloadBlob(meta.location, blob, meta, t, new URL(meta.location).host === new URL(url).host);
  }
  linkPointer(blob, pointer);
  return pointer;
}

/** Record a file the Hub says is absent (`.no_exist/<commit>/<file>`), as huggingface_hub does for transformers. */
function rememberMissing(folder: string, revision: string, filename: string, err: HubError): void {
  const commit = err.commit;
  if (!commit) return;
  const path = join(folder, ".no_exist", commit, filename);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, "");
  writeRef(folder, revision, commit);
}

/** A repo's commit and file list at a revision (GET /api/models/{id}/revision/{rev}). */
export async function repoInfo(repoId: string, opts: HubOptions = {}): Promise<{ sha: string; files: string[] }> {
  const revision = opts.revision ?? "main";
  const t = target(repoId, revision, opts);
  const res = await hubFetch(
    `${t.endpoint}/api/models/${repoId}/revision/${encodeURIComponent(revision)}`,
    { headers: hubHeaders(t.token) },
    t,
  );
  if (!res.ok) throw errorFromResponse(res, t);
  const body = (await res.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
  if (typeof body.sha !== "string" || !Array.isArray(body.siblings)) {
    throw new HubError(
      "http",
      `${t.endpoint} answered the repo info of ${repoId} without "sha" and "siblings"`,
      "check HF_ENDPOINT: it must point at a Hugging Face Hub",
    );
  }
  return { sha: body.sha, files: body.siblings.map((s) => String(s.rfilename)) };
}

/** fnmatch as huggingface_hub's filter_repo_objects uses it: `*` matches any run of characters (slashes too). */
function matches(name: string, pattern: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${source}$`).test(name);
}

/** Options of snapshotDownload: the Hub options and which files to fetch. */
export interface SnapshotOptions extends HubOptions {
  /** Only the files matching one of these patterns (default: all). */
  allowPatterns?: readonly string[];
}

/**
 * The snapshot folder of a repo revision with the wanted files in it (huggingface_hub's snapshot_download): one
 * repo-info request says the commit and the files; files already in that snapshot are not requested again.
 * Offline (or when the Hub cannot be reached) the cached snapshot of the revision is returned.
 */
export async function snapshotDownload(
  repoId: string,
  opts: SnapshotOptions = {},
  warn: WarningSink = () => {},
): Promise<string> {
  const revision = opts.revision ?? "main";
  const folder = repoCacheFolder(repoId, opts);
  const cachedSnapshot = (): string | undefined => {
    const commit = cachedCommit(folder, revision);
    return commit && existsSync(join(folder, "snapshots", commit)) ? join(folder, "snapshots", commit) : undefined;
  };
  if (isOffline(opts)) {
    const cached = cachedSnapshot();
    if (cached) return cached;
    throw notCached(repoId, revision, "the snapshot", opts);
  }
  let info: { sha: string; files: string[] };
  try {
    info = await repoInfo(repoId, opts);
  } catch (err) {
    const cached = cachedSnapshot();
    if (err instanceof HubError && (err.reason === "network" || err.reason === "http") && cached) {
      warn(`${err.message}; using the cached snapshot of ${repoId}@${revision}`);
      return cached;
    }
    throw err instanceof HubError && err.reason === "network"
      ? notCached(repoId, revision, "the snapshot", opts, err)
      : err;
  }
  writeRef(folder, revision, info.sha);
  const snapshot = join(folder, "snapshots", info.sha);
  const wanted = opts.allowPatterns
    ? info.files.filter((f) => opts.allowPatterns!.some((p) => matches(f, p)))
    : info.files;
  for (const file of wanted) {
    if (!existsSync(join(snapshot, file))) await hfHubDownload(repoId, file, { ...opts, revision: info.sha }, warn);
  }
  mkdirSync(snapshot, { recursive: true });
  return snapshot;
}

/** Whether a name is a local path that exists (it then wins over a repo id of the same spelling, as in transformers). */
export function isLocalPath(nameOrPath: string): boolean {
  return existsSync(nameOrPath) && statSync(nameOrPath).isDirectory();
}

/**
 * The local folder for a `fromPretrained` name: the name itself when it is a local folder or not a repo id, else
 * the snapshot folder of the repo in the cache with the files `kind` needs (downloaded when missing). Several
 * kinds fetch the union of their files (a model and its tokenizer); the first kind's key file must be there.
 */
export async function resolvePretrained(
  nameOrPath: string,
  kind: PretrainedKind | readonly PretrainedKind[],
  opts: HubOptions = {},
  warn?: WarningSink,
): Promise<string> {
  if (isLocalPath(nameOrPath) || !isRepoId(nameOrPath)) return nameOrPath;
  const kinds = typeof kind === "string" ? [kind] : kind;
  const patterns = kinds.flatMap((k) => PRETRAINED_FILES[k].patterns);
  const required = PRETRAINED_FILES[kinds[0]!].required;
  const snapshot = await snapshotDownload(nameOrPath, { ...opts, allowPatterns: patterns }, warn);
  if (!existsSync(join(snapshot, required))) {
    const revision = opts.revision ?? "main";
    if (isOffline(opts)) throw notCached(nameOrPath, revision, required, opts);
    throw new HubError(
      "entry-not-found",
      `${nameOrPath}@${revision} has no ${required}, so it is not ` +
        `${kinds[0] === "adapter" ? "an" : "a"} ${kinds[0]} repo`,
      `check the id: a ${kinds[0]} repo holds ` +
        `${required}${kinds[0] === "adapter" ? " (pass a base model with --model, an adapter with --adapter)" : ""}`,
    );
  }
  return snapshot;
}
