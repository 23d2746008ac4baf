/**
 * huggingface_hub's cache layout and settings, shared with Python: a repo lives in
 * `<cache>/models--org--name/` with `blobs/<etag>` (the contents), `snapshots/<commit>/<file>` (relative symlinks
 * to the blobs) and `refs/<revision>` (the commit a branch or tag pointed to last). Environment variables are read
 * as huggingface_hub 0.25 reads them (constants.py), at call time so tests and long-running servers see changes.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, sep } from "node:path";
import { writeFileAtomic } from "./atomic.js";

/** Where a download may look and what it may send: the options every Hub-aware `fromPretrained` takes. */
export interface HubOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** The hub cache folder (default: HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Access token (default: HF_TOKEN, else the token file $HF_HOME/token written by `huggingface-cli login`); false sends none. */
  token?: string | false;
  /** Use the cache only, never the network (as HF_HUB_OFFLINE=1 does for every call). */
  localFilesOnly?: boolean;
  /** Hub address (default: HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
}

/** Only the Hub fields of a wider options object (fromPretrained's), so that they can cross to a worker thread. */
export function hubOptionsOf(opts: HubOptions): HubOptions {
  const { revision, cacheDir, token, localFilesOnly, endpoint } = opts;
  return Object.fromEntries(
    Object.entries({ revision, cacheDir, token, localFilesOnly, endpoint }).filter(([, v]) => v !== undefined),
  );
}

const TRUE_VALUES = new Set(["1", "ON", "YES", "TRUE"]);

/** huggingface_hub's truthy environment values ("1", "ON", "YES", "TRUE", any case). */
export function envIsTrue(value: string | undefined): boolean {
  return value !== undefined && TRUE_VALUES.has(value.toUpperCase());
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith(`~${sep}`) || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return expandHome(env["HF_HOME"] || join(env["XDG_CACHE_HOME"] || join(homedir(), ".cache"), "huggingface"));
}

/** The hub cache folder: HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir(opts: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): string {
  return expandHome(opts.cacheDir ?? (env["HF_HUB_CACHE"] || env["HUGGINGFACE_HUB_CACHE"] || join(hfHome(env), "hub")));
}

/** The Hub address without a trailing slash. */
export function hubEndpoint(opts: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): string {
  return (opts.endpoint ?? (env["HF_ENDPOINT"] || "https://huggingface.co")).replace(/\/+$/, "");
}

/** Whether the network is off: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set, or localFilesOnly. */
export function isOffline(opts: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): boolean {
  return opts.localFilesOnly === true || envIsTrue(env["HF_HUB_OFFLINE"] || env["TRANSFORMERS_OFFLINE"]);
}

/** The token to send: the option, else HF_TOKEN / HUGGING_FACE_HUB_TOKEN, else the token file (HF_TOKEN_PATH or $HF_HOME/token). */
export function hubToken(opts: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (opts.token === false) return undefined;
  if (opts.token) return opts.token;
  const fromEnv = (env["HF_TOKEN"] || env["HUGGING_FACE_HUB_TOKEN"])?.trim();
  if (fromEnv) return fromEnv;
  const file = expandHome(env["HF_TOKEN_PATH"] || join(hfHome(env), "token"));
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined; // no token file: anonymous access, as huggingface_hub
  }
}

const REPO_ID = /^(?:[\w.-]+\/)?[\w.-]+$/;
/** A full commit hash (huggingface_hub's REGEX_COMMIT_HASH). */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** Whether `name` is a valid Hub repo id ("name" or "org/name", as huggingface_hub's validate_repo_id). */
export function isRepoId(name: string): boolean {
  return (
    name.length <= 96 && REPO_ID.test(name) && !name.includes("--") && !name.includes("..") && !/^[.-]|[.-]$/.test(name)
  );
}

/** The cache folder of one model repo, `<cache>/models--org--name`. */
export function repoCacheFolder(repoId: string, opts: HubOptions = {}): string {
  return join(hubCacheDir(opts), `models--${repoId.split("/").join("--")}`);
}

/** The repo id of a snapshot folder of the cache (`…/models--org--name/snapshots/<commit>`), else undefined. */
export function repoIdOfSnapshot(path: string): string | undefined {
  const m = /(?:^|[\\/])models--([^\\/]+)[\\/]snapshots[\\/][0-9a-f]{40}[\\/]?$/.exec(path);
  return m ? m[1]!.split("--").join("/") : undefined;
}

/** The commit a revision points to in the cache: the revision itself when it is a commit, else refs/<revision>. */
export function cachedCommit(repoFolder: string, revision: string): string | undefined {
  if (COMMIT_HASH.test(revision)) return revision;
  try {
    return readFileSync(join(repoFolder, "refs", revision), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Record which commit a branch or tag points to (refs/<revision>), as huggingface_hub does after each lookup. */
export function writeRef(repoFolder: string, revision: string, commit: string): void {
  if (revision === commit) return;
  const path = join(repoFolder, "refs", revision);
  if (cachedCommit(repoFolder, revision) === commit) return;
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileAtomic(path, commit);
}

/** Files of a snapshot folder, relative, with "/" separators (nested folders included). */
export function snapshotFiles(folder: string, prefix = ""): string[] {
  if (!existsSync(folder)) return [];
  const out: string[] = [];
  for (const name of readdirSync(folder).sort()) {
    const path = join(folder, name);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) out.push(...snapshotFiles(path, `${prefix}${name}/`));
    else out.push(`${prefix}${name}`);
  }
  return out;
}

/** One line per cached revision of a repo ("main → 1a2b3c4 (config.json, model.safetensors)"), for error messages. */
export function describeCache(repoFolder: string): string {
  const snapshots = join(repoFolder, "snapshots");
  if (!existsSync(snapshots)) return `nothing is cached for it in ${repoFolder}`;
  const refsDir = join(repoFolder, "refs");
  const refs = existsSync(refsDir) ? snapshotFiles(refsDir) : [];
  const lines = readdirSync(snapshots)
    .sort()
    .map((commit) => {
      const names = refs.filter((r) => cachedCommit(repoFolder, r) === commit);
      const files = snapshotFiles(join(snapshots, commit));
      return `${names.length > 0 ? `${names.join(", ")} → ` : ""}${commit} (${files.join(", ") || "no files"})`;
    });
  return lines.length > 0
    ? `cached in ${repoFolder}: ${lines.join("; ")}`
    : `nothing is cached for it in ${repoFolder}`;
}
