/**
 * A local stand-in for the Hugging Face Hub (node:http on 127.0.0.1, a free port) that speaks the parts peft-ts
 * uses, as huggingface.co answers them: repo info (/api/models/{id}/revision/{rev}), /{id}/resolve/{rev}/{file}
 * (X-Repo-Commit, ETag = git blob sha1, LFS files redirected to a CDN-like URL with X-Linked-Etag = sha256 and
 * X-Linked-Size, Range requests there), X-Error-Code errors (RepoNotFound, RevisionNotFound, EntryNotFound,
 * GatedRepo with 401/403), and the upload side (repo creation, preupload, LFS batch + PUT + verify, NDJSON commit).
 *
 * The server runs in a worker thread: the synchronous loaders block the test's own thread while they download.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

/** One commit of a mock repo: its files and the branch/tag names pointing at it. */
export interface MockCommit {
  files: Record<string, Uint8Array>;
  refs: string[];
}

/** A mock repo; `gatedToken` makes it gated, readable only with that token. */
export interface MockRepo {
  id: string;
  commits: MockCommit[];
  gatedToken?: string;
}

/** One request the server saw. */
export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
  auth?: string;
}

/** Server behaviour switches. */
export interface MockOptions {
  /** Cut the connection halfway through the first full (non-Range) CDN download of each blob. */
  cutFirstDownload?: boolean;
}

/** The running mock Hub, seen from the test. */
export interface MockHub {
  url: string;
  /** The requests seen so far (and clears the log). */
  takeRequests(): Promise<LoggedRequest[]>;
  /** The repos as they are now (after pushes): id → commit sha → path → bytes. */
  repos(): Promise<
    Record<
      string,
      { refs: Record<string, string>; commits: Record<string, Record<string, Uint8Array>>; private: boolean }
    >
  >;
  stop(): Promise<void>;
}

/** Start the mock Hub in a worker thread. */
export async function startMockHub(repos: MockRepo[], options: MockOptions = {}): Promise<MockHub> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { repos, options } });
  const ask = <T>(cmd: string): Promise<T> =>
    new Promise((resolve) => {
      const onMessage = (m: { cmd: string; value: T }) => {
        if (m.cmd !== cmd) return;
        worker.off("message", onMessage);
        resolve(m.value);
      };
      worker.on("message", onMessage);
      if (cmd !== "ready") worker.postMessage(cmd);
    });
  const url = await ask<string>("ready");
  return {
    url,
    takeRequests: () => ask("requests"),
    repos: () => ask("repos"),
    stop: async () => {
      await worker.terminate();
    },
  };
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Uint8Array) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const isLfs = (path: string, bytes: Uint8Array) => path.endsWith(".safetensors") || bytes.length > 10_000_000;

interface RepoState {
  refs: Record<string, string>;
  commits: Record<string, Record<string, Uint8Array>>;
  gatedToken?: string;
  private: boolean;
}

function commitSha(files: Record<string, Uint8Array>, parent: string): string {
  const h = createHash("sha1").update(parent);
  for (const [p, b] of Object.entries(files).sort()) h.update(p).update(sha256(b));
  return h.digest("hex");
}

function runServer(input: { repos: MockRepo[]; options: MockOptions }): void {
  const repos = new Map<string, RepoState>();
  const blobs = new Map<string, Uint8Array>(); // sha256 → bytes, the "CDN"
  const cut = new Set<string>();
  const log: LoggedRequest[] = [];
  for (const r of input.repos) {
    const state: RepoState = {
      refs: {},
      commits: {},
      private: false,
      ...(r.gatedToken ? { gatedToken: r.gatedToken } : {}),
    };
    let parent = "";
    for (const c of r.commits) {
      const files = Object.fromEntries(Object.entries(c.files).map(([p, b]) => [p, new Uint8Array(b)]));
      parent = commitSha(files, parent);
      state.commits[parent] = files;
      for (const ref of c.refs) state.refs[ref] = parent;
      for (const b of Object.values(files)) blobs.set(sha256(b), b);
    }
    repos.set(r.id, state);
  }

  const fail = (
    res: ServerResponse,
    status: number,
    code: string | null,
    message: string,
    extra: Record<string, string> = {},
  ) => {
    res.writeHead(status, {
      "content-type": "application/json",
      ...(code ? { "x-error-code": code } : {}),
      "x-error-message": message,
      ...extra,
    });
    res.end(JSON.stringify({ error: message }));
  };
  const body = (req: IncomingMessage): Promise<Buffer> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks)));
    });
  const json = (res: ServerResponse, value: unknown, status = 200) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(value));
  };
  /** The commit of a revision, or an error answer already sent. */
  const lookup = (res: ServerResponse, id: string, rev: string): [RepoState, string] | null => {
    const repo = repos.get(id);
    if (!repo) {
      fail(res, 404, "RepoNotFound", "Repository not found");
      return null;
    }
    const sha = repo.refs[rev] ?? (repo.commits[rev] ? rev : undefined);
    if (!sha) {
      fail(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
      return null;
    }
    return [repo, sha];
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const path = decodeURIComponent(url.pathname);
    const { range, authorization } = req.headers;
    log.push({
      method: req.method ?? "",
      path,
      ...(range ? { range } : {}),
      ...(authorization ? { auth: authorization } : {}),
    });
    const host = `http://${req.headers.host}`;
    let m: RegExpMatchArray | null;

    m = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(path);
    if (m && req.method === "GET") {
      const found = lookup(res, m[1]!, m[2]!);
      if (!found) return;
      const [repo, sha] = found;
      const siblings = Object.keys(repo.commits[sha]!)
        .sort()
        .map((rfilename) => ({ rfilename }));
      json(res, { id: m[1], sha, private: repo.private, gated: repo.gatedToken ? "manual" : false, siblings });
      return;
    }
    m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m && (req.method === "HEAD" || req.method === "GET")) {
      const found = lookup(res, m[1]!, m[2]!);
      if (!found) return;
      const [repo, sha] = found;
      if (repo.gatedToken && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
        fail(res, req.headers.authorization ? 403 : 401, "GatedRepo", "Access to this repo is restricted");
        return;
      }
      const file = repo.commits[sha]![m[3]!];
      if (!file) {
        fail(res, 404, "EntryNotFound", "Entry not found", { "x-repo-commit": sha });
        return;
      }
      if (isLfs(m[3]!, file)) {
        res.writeHead(302, {
          location: `${host}/cdn/${sha256(file)}`,
          "x-repo-commit": sha,
          etag: `"${gitSha1(file)}"`,
          "x-linked-etag": `"${sha256(file)}"`,
          "x-linked-size": String(file.length),
          "content-length": "0",
        });
        res.end();
        return;
      }
      res.writeHead(200, { "x-repo-commit": sha, etag: `"${gitSha1(file)}"`, "content-length": String(file.length) });
      res.end(req.method === "GET" ? file : undefined);
      return;
    }
    m = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (m && req.method === "GET") {
      const blob = blobs.get(m[1]!);
      if (!blob) return fail(res, 404, null, "no such object");
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      if (range) {
        const start = Number(range[1]);
        if (start >= blob.length) return fail(res, 416, null, "range not satisfiable");
        res.writeHead(206, {
          "content-length": String(blob.length - start),
          "content-range": `bytes ${start}-${blob.length - 1}/${blob.length}`,
        });
        res.end(blob.subarray(start));
        return;
      }
      res.writeHead(200, { "content-length": String(blob.length) });
      if (input.options.cutFirstDownload && !cut.has(m[1]!)) {
        cut.add(m[1]!);
        res.write(blob.subarray(0, blob.length >> 1), () => res.socket?.destroy());
        return;
      }
      res.end(blob);
      return;
    }

    // Uploading.
    const auth = req.headers.authorization;
    if (path === "/api/repos/create" && req.method === "POST") {
      if (!auth) return fail(res, 401, null, "Invalid username or password.");
      const {
        name,
        organization,
        private: priv,
      } = JSON.parse((await body(req)).toString()) as { name: string; organization?: string; private?: boolean };
      const id = organization ? `${organization}/${name}` : name;
      if (repos.has(id)) return fail(res, 409, null, "You already created this model repo", {});
      repos.set(id, { refs: {}, commits: {}, private: priv === true });
      json(res, { url: `${host}/${id}`, name: id });
      return;
    }
    m = /^\/api\/models\/(.+)\/preupload\/([^/]+)$/.exec(path);
    if (m && req.method === "POST") {
      if (!auth) return fail(res, 401, null, "Invalid credentials");
      if (!repos.has(m[1]!)) return fail(res, 404, "RepoNotFound", "Repository not found");
      const { files } = JSON.parse((await body(req)).toString()) as {
        files: { path: string; sample: string; size: number }[];
      };
      const mode = (f: { path: string; size: number }) =>
        f.path.endsWith(".safetensors") && f.size > 0 ? "lfs" : "regular";
      json(res, { files: files.map((f) => ({ path: f.path, uploadMode: mode(f), shouldIgnore: false })) });
      return;
    }
    m = /^\/(.+)\.git\/info\/lfs\/objects\/batch$/.exec(path);
    if (m && req.method === "POST") {
      if (!auth) return fail(res, 401, null, "Invalid credentials");
      const { objects } = JSON.parse((await body(req)).toString()) as { objects: { oid: string; size: number }[] };
      res.writeHead(200, { "content-type": "application/vnd.git-lfs+json" });
      res.end(
        JSON.stringify({
          transfer: "basic",
          objects: objects.map((o) => ({
            oid: o.oid,
            size: o.size,
            ...(blobs.has(o.oid)
              ? {}
              : {
                  actions: { upload: { href: `${host}/lfs-upload/${o.oid}` }, verify: { href: `${host}/lfs-verify` } },
                }),
          })),
        }),
      );
      return;
    }
    m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(path);
    if (m && req.method === "PUT") {
      const bytes = await body(req);
      if (sha256(bytes) !== m[1]) return fail(res, 400, null, "sha256 mismatch");
      blobs.set(m[1]!, new Uint8Array(bytes));
      res.writeHead(200);
      res.end();
      return;
    }
    if (path === "/lfs-verify" && req.method === "POST") {
      const { oid, size } = JSON.parse((await body(req)).toString()) as { oid: string; size: number };
      if (blobs.get(oid)?.length !== size) return fail(res, 404, null, "object not uploaded");
      json(res, { ok: true });
      return;
    }
    m = /^\/api\/models\/(.+)\/commit\/([^/]+)$/.exec(path);
    if (m && req.method === "POST") {
      if (!auth) return fail(res, 401, null, "Invalid credentials");
      const repo = repos.get(m[1]!);
      if (!repo) return fail(res, 404, "RepoNotFound", "Repository not found");
      if (req.headers["content-type"] !== "application/x-ndjson")
        return fail(res, 400, null, "expected application/x-ndjson");
      const lines = (await body(req))
        .toString()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
      if (lines[0]?.key !== "header" || typeof lines[0].value["summary"] !== "string")
        return fail(res, 400, null, "first line must be the header");
      const parent = repo.refs[m[2]!] ?? "";
      const files: Record<string, Uint8Array> = parent ? { ...repo.commits[parent] } : {};
      for (const { key, value } of lines.slice(1)) {
        if (key === "file")
          files[value["path"] as string] = new Uint8Array(
            Buffer.from(value["content"] as string, value["encoding"] as BufferEncoding),
          );
        else if (key === "lfsFile") {
          const blob = blobs.get(value["oid"] as string);
          if (!blob || blob.length !== value["size"])
            return fail(res, 422, null, `LFS object ${String(value["oid"])} was not uploaded`);
          files[value["path"] as string] = blob;
        } else return fail(res, 400, null, `unknown key ${key}`);
      }
      const sha = commitSha(files, parent);
      repo.commits[sha] = files;
      repo.refs[m[2]!] = sha;
      json(res, { success: true, commitOid: sha, commitUrl: `${host}/${m[1]}/commit/${sha}` });
      return;
    }
    fail(res, 404, null, `mock hub: no route for ${req.method} ${path}`);
  });
  server.listen(0, "127.0.0.1", () => {
    parentPort!.postMessage({ cmd: "ready", value: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  });
  parentPort!.on("message", (cmd: string) => {
    if (cmd === "requests") parentPort!.postMessage({ cmd, value: log.splice(0) });
    if (cmd === "repos") parentPort!.postMessage({ cmd, value: Object.fromEntries(repos) });
  });
}

if (!isMainThread && (workerData as { repos?: unknown } | null)?.repos)
  runServer(workerData as { repos: MockRepo[]; options: MockOptions });
