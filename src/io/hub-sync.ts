/**
 * The synchronous face of resolvePretrained, for the loaders that are synchronous (as transformers'
 * from_pretrained is): the download runs in a worker thread (fetch is asynchronous) while this thread waits on a
 * shared flag with Atomics.wait, then takes the answer with receiveMessageOnPort. A local folder never starts one.
 */
import { MessageChannel, Worker, receiveMessageOnPort } from "node:worker_threads";
import { HubError, type HubErrorReason } from "../errors.js";
import { hubOptionsOf, isRepoId } from "./hub-cache.js";
import { isLocalPath, type HubOptions, type PretrainedKind } from "./hub.js";

/** What the worker posts back: the folder, or the error's parts (errors cannot cross threads as themselves). */
export interface WorkerAnswer {
  path?: string;
  error?: { message: string; reason?: HubErrorReason; hint?: string; status?: number; commit?: string };
  warnings: string[];
}

/**
 * The local folder for a `fromPretrained` name, synchronously: a local folder (or a name that is no repo id) as
 * it is, else the repo's snapshot folder with the files `kind` needs, downloaded into the shared cache if missing.
 */
export function resolvePretrainedSync(
  nameOrPath: string,
  kind: PretrainedKind | readonly PretrainedKind[],
  opts: HubOptions = {},
): string {
  if (isLocalPath(nameOrPath) || !isRepoId(nameOrPath)) return nameOrPath;
  const done = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  // execArgv: none of the parent's flags (an `-e`/`--input-type` entry would stop the worker from starting).
  const worker = new Worker(new URL("./hub-worker.js", import.meta.url), {
    execArgv: [],
    workerData: { nameOrPath, kind, opts: hubOptionsOf(opts), done, port: port2 },
    transferList: [port2],
  });
  try {
    Atomics.wait(done, 0, 0);
    const answer = receiveMessageOnPort(port1)?.message as WorkerAnswer | undefined;
    if (!answer) throw new Error(`the Hub download worker for ${nameOrPath} stopped without an answer`);
    for (const w of answer.warnings) process.emitWarning(w);
    if (answer.error) {
      const e = answer.error;
      throw e.reason ? new HubError(e.reason, e.message, e.hint, e.status, e.commit) : new Error(e.message);
    }
    return answer.path!;
  } finally {
    port1.close();
    void worker.terminate();
  }
}
