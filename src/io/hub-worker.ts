/** Worker thread of resolvePretrainedSync: runs the asynchronous resolvePretrained, posts the answer, wakes the caller. */
import { workerData, type MessagePort } from "node:worker_threads";
import type { HubError } from "../errors.js";
import type { HubOptions, PretrainedKind } from "./hub.js";
import type { WorkerAnswer } from "./hub-sync.js";

const { nameOrPath, kind, opts, done, port } = workerData as {
  nameOrPath: string;
  kind: PretrainedKind[];
  opts: HubOptions;
  done: Int32Array;
  port: MessagePort;
};
const answer: WorkerAnswer = { warnings: [] };
try {
  // Imported here, not at the top, so that a failure to load is reported instead of leaving the caller waiting.
  const { resolvePretrained } = await import("./hub.js");
  answer.path = await resolvePretrained(nameOrPath, kind, opts, (w) => answer.warnings.push(w));
} catch (err) {
  const e = err as Error & Partial<Pick<HubError, "reason" | "hint" | "status" | "commit">>;
  answer.error = {
    message: e.message ?? String(err),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.hint ? { hint: e.hint } : {}),
    ...(e.status !== undefined ? { status: e.status } : {}),
    ...(e.commit ? { commit: e.commit } : {}),
  };
} finally {
  port.postMessage(answer);
  Atomics.store(done, 0, 1);
  Atomics.notify(done, 0);
}
