/**
 * The Hub's HTTP protocol as huggingface_hub speaks it: request headers, errors from X-Error-Code, file metadata
 * from a HEAD on /resolve/ (X-Repo-Commit, X-Linked-Etag/ETag, X-Linked-Size, Location), and blob downloads that
 * resume (.incomplete + Range), verify (size, and the LFS sha256 or git blob sha1 the etag is) and land atomically.
 */
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { isatty } from "node:tty";
import { HubError } from "../errors.js";
import { envIsTrue } from "./hub-cache.js";

/** What a request is about, for error messages. */
export interface HubTarget {
  repoId: string;
  revision: string;
  filename?: string;
  endpoint: string;
  token?: string;
  /** Set for uploads: a 401 then means a bad token, not a missing repo. */
  upload?: boolean;
}

/** The headers huggingface_hub sends: a user agent and, with a token, its bearer authorisation. */
export function hubHeaders(token: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "user-agent": `peft-ts; node/${process.versions.node}`,
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...extra,
  };
}

/** The page where a user accepts a gated repo's conditions. */
function repoPage(t: HubTarget): string {
  return `${t.endpoint}/${t.repoId}`;
}

const TOKEN_HINT =
  "create a token at https://huggingface.co/settings/tokens and set HF_TOKEN=hf_… (or pass { " +
  "token }, or run `huggingface-cli login`)";

/** The HubError for a failed response, named after huggingface_hub's X-Error-Code cases. */
export function errorFromResponse(res: Response, t: HubTarget): HubError {
  const code = res.headers.get("x-error-code");
  const serverMessage = res.headers.get("x-error-message");
  const detail = serverMessage ? ` (server: ${serverMessage})` : "";
  const what = t.filename ? `${t.filename} from ${t.repoId}` : t.repoId;
  if (code === "GatedRepo") {
    const why = t.token ? "your token has no access to it" : "no token was sent";
    return new HubError(
      "gated",
      `${t.repoId} is a gated repo and ${why}: cannot download ${what}${detail}`,
      `open ${repoPage(t)} while logged in and accept its conditions (access may need the owners' approval); ` +
        `then ${t.token ? "use a token of that account" : TOKEN_HINT}`,
      res.status,
    );
  }
  if (code === "RevisionNotFound") {
    return new HubError(
      "revision-not-found",
      `revision "${t.revision}" does not exist in ${t.repoId} (the repo exists)${detail}`,
      `pass an existing branch, tag or commit as revision (see ${repoPage(t)}/tree/main); the default is "main"`,
      res.status,
    );
  }
  if (code === "EntryNotFound") {
    return new HubError(
      "entry-not-found",
      `${t.repoId} has no file ${t.filename ?? "?"} at revision "${t.revision}" (the repo and revision exist)${detail}`,
      `check the file name against ${repoPage(t)}/tree/${t.revision}`,
      res.status,
      res.headers.get("x-repo-commit") ?? undefined,
    );
  }
  if (t.upload && res.status === 401) {
    return new HubError(
      "unauthorized",
      `the Hub at ${t.endpoint} refused the token for ${t.repoId} (HTTP 401: invalid or expired)${detail}`,
      `create a write token at https://huggingface.co/settings/tokens and set HF_TOKEN=hf_… (or pass { token })`,
      res.status,
    );
  }
  if (code === "RepoNotFound" || res.status === 401 || res.status === 404) {
    const reason = res.status === 401 && !t.token ? "unauthorized" : "repo-not-found";
    const local = t.upload ? "" : `${t.repoId} is not a local folder, and `;
    const visible = t.token ? "your token can see" : "is public";
    return new HubError(
      reason,
      `${local}the Hub at ${t.endpoint} has no repo ${t.repoId} that ${visible} (HTTP ${res.status})${detail}`,
      `check the id (org/name); if the repo is private or gated, ` +
        `${t.token ? "use a token with access to it" : TOKEN_HINT}`,
      res.status,
    );
  }
  if (res.status === 403) {
    return new HubError(
      "unauthorized",
      `access to ${what} was refused (HTTP 403)${detail}`,
      `make sure your token has the needed permission (read for downloads, write for uploads): ${TOKEN_HINT}`,
      res.status,
    );
  }
  return new HubError(
    "http",
    `the Hub answered HTTP ${res.status} for ${what}${detail}`,
    "retry later; if it persists, check https://status.huggingface.co",
    res.status,
  );
}

/** A fetch that turns connection failures into HubError("network") naming the endpoint. */
export async function hubFetch(url: string, init: RequestInit, t: HubTarget): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new HubError(
      "network",
      `cannot reach ${t.endpoint} for ${t.repoId} (${cause?.code ?? cause?.message ?? (err as Error).message})`,
      "check your connection (and HF_ENDPOINT); to work from the cache only, set HF_HUB_OFFLINE=1",
    );
  }
}

/** A file's metadata on the Hub, as huggingface_hub's get_hf_file_metadata returns it. */
export interface FileMetadata {
  commit: string;
  etag: string;
  size: number;
  /** Where the bytes are: the LFS/CDN address of a redirect, else the resolve URL. */
  location: string;
}

/** Strip a weak marker and quotes from an etag (huggingface_hub's _normalize_etag). */
function normalizeEtag(etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, "").replace(/"/g, "");
}

/** HEAD a resolve URL, following relative redirects only (renamed repos), as huggingface_hub does. */
export async function fileMetadata(url: string, t: HubTarget): Promise<FileMetadata> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await hubFetch(
      current,
      {
        method: "HEAD",
        redirect: "manual",
        headers: hubHeaders(t.token, { "accept-encoding": "identity" }),
        signal: AbortSignal.timeout(10_000),
      },
      t,
    );
    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location?.startsWith("/") && hop < 10) {
      current = new URL(location, current).toString();
      continue;
    }
    if (res.status >= 400) throw errorFromResponse(res, t);
    const commit = res.headers.get("x-repo-commit");
    const etag = normalizeEtag(res.headers.get("x-linked-etag") ?? res.headers.get("etag"));
    const size = Number(res.headers.get("x-linked-size") ?? res.headers.get("content-length") ?? Number.NaN);
    if (!commit || !etag || !Number.isFinite(size)) {
      throw new HubError(
        "http",
        `${current} did not answer like the Hugging Face Hub (no X-Repo-Commit, ETag or size header)`,
        "check HF_ENDPOINT and any proxy or firewall between you and the Hub",
      );
    }
    return { commit, etag, size, location: location ? new URL(location, current).toString() : current };
  }
}

/** How a download checks the finished bytes: by the etag when it is a sha256 (LFS) or a git blob sha1. */
function verifier(etag: string, size: number): { hash: Hash; expected: string } | null {
  if (/^[0-9a-f]{64}$/.test(etag)) return { hash: createHash("sha256"), expected: etag };
  if (/^[0-9a-f]{40}$/.test(etag)) return { hash: createHash("sha1").update(`blob ${size}\0`), expected: etag };
  return null;
}

/** A one-line progress display on stderr, shown only on a terminal (as tqdm), unless HF_HUB_DISABLE_PROGRESS_BARS. */
class Progress {
  private readonly enabled = isatty(2) && !envIsTrue(process.env["HF_HUB_DISABLE_PROGRESS_BARS"]);
  private last = 0;
  private readonly started = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly initial: number,
  ) {}

  update(done: number, final = false): void {
    if (!this.enabled || (!final && Date.now() - this.last < 100)) return;
    this.last = Date.now();
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const rate = (done - this.initial) / Math.max(1e-3, (Date.now() - this.started) / 1000);
    const pct = this.total > 0 ? Math.floor((100 * done) / this.total) : 100;
    const width = 24;
    const bar = "#".repeat(Math.round((pct / 100) * width)).padEnd(width, ".");
    writeSync(
      2,
      `\r${this.label.slice(-40)} ${String(pct).padStart(3)}% [${bar}] ` +
        `${mb(done)}/${mb(this.total)} MB ${mb(rate)} MB/s${final ? "\n" : ""}`,
    );
  }
}

const RETRIES = 5;

/**
 * Download `location` into `blobPath` through `blobPath.incomplete`: a partial file from an earlier, interrupted
 * run (Python's or ours) is continued with a Range request, a connection lost mid-body is resumed up to 5 times,
 * and the finished bytes are checked (size, hash) before the rename makes them visible.
 */
export async function downloadBlob(
  location: string,
  blobPath: string,
  meta: FileMetadata,
  t: HubTarget,
  sameHost: boolean,
): Promise<void> {
  const incomplete = `${blobPath}.incomplete`;
  const fd = openSync(incomplete, "a+");
  const check = verifier(meta.etag, meta.size);
  try {
    let have = statSync(incomplete).size;
    if (have > meta.size) {
      ftruncateSync(fd, 0);
      have = 0;
    }
    if (check && have > 0) hashExisting(fd, have, check.hash);
    const progress = new Progress(t.filename ?? blobPath, meta.size, have);
    for (let attempt = 0; have < meta.size; attempt++) {
      // A CDN address is signed: the token goes only to the Hub itself (huggingface_hub drops it on another host).
      const headers = hubHeaders(sameHost ? t.token : undefined, {
        "accept-encoding": "identity",
        ...(have > 0 ? { range: `bytes=${have}-` } : {}),
      });
      const res = await hubFetch(location, { headers }, t);
      if (res.status >= 400) throw errorFromResponse(res, t);
      if (have > 0 && res.status !== 206) {
        // The server ignored the Range header: start over.
        ftruncateSync(fd, 0);
        have = 0;
        if (check) check.hash = verifier(meta.etag, meta.size)!.hash;
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          writeSync(fd, chunk, 0, chunk.length, have);
          check?.hash.update(chunk);
          have += chunk.length;
          progress.update(have);
        }
      } catch (err) {
        if (attempt + 1 >= RETRIES) {
          throw new HubError(
            "network",
            `the download of ${t.filename} from ${t.repoId} broke off ${RETRIES} times (${(err as Error).message}); ` +
              `${have} of ${meta.size} bytes are kept in ${incomplete}`,
            "run again to resume where it stopped; to work from the cache only, set HF_HUB_OFFLINE=1",
          );
        }
        continue;
      }
      if (have < meta.size && attempt + 1 >= RETRIES) break;
    }
    progress.update(have, true);
    if (have !== meta.size) throw corrupt(t, incomplete, `${have} bytes arrived, the Hub announced ${meta.size}`);
    if (check) {
      const got = check.hash.digest("hex");
      if (got !== check.expected)
        throw corrupt(t, incomplete, `its hash is ${got}, the Hub's etag says ${check.expected}`);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(incomplete, blobPath);
}

function hashExisting(fd: number, length: number, hash: Hash): void {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = 0; pos < length; ) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, length - pos), pos);
    if (n <= 0) break;
    hash.update(buf.subarray(0, n));
    pos += n;
  }
}

function corrupt(t: HubTarget, incomplete: string, why: string): HubError {
  if (existsSync(incomplete)) unlinkSync(incomplete);
  return new HubError(
    "corrupt-download",
    `the download of ${t.filename} from ${t.repoId} is corrupt: ${why}; it was deleted`,
    "run again to download it anew; if it fails again, check any proxy between you and the Hub",
  );
}
