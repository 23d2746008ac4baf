/** Backend selection: the native addon when it loads, the pure-TypeScript backend otherwise (or when asked). */
import type { Backend } from "./backend.js";
import { JsBackend } from "./js/js-backend.js";
import { loadNativeBackend } from "./native/native-backend.js";
import { isProfiling, profiledBackend } from "./profile.js";
import { envChoice } from "./env.js";
import { EnvironmentError } from "../errors.js";

export type { Backend, DType, Storage, View } from "./backend.js";
export {
  isProfiling,
  setProfiling,
  profileReport,
  profileReset,
  profileEntries,
  profileAdd,
  profiledBackend,
} from "./profile.js";

let active: Backend | null = null;

function choose(): Backend {
  const wanted = envChoice("PEFT_TS_BACKEND", ["native", "js"], "the backend");
  if (wanted === "js") return new JsBackend();
  try {
    return loadNativeBackend();
  } catch (err) {
    if (wanted === "native" || err instanceof EnvironmentError) throw err;
    process.emitWarning(
      `peft-ts: native backend unavailable (${(err as Error).message}); using the slow js backend. ` +
        "Fix: install OpenBLAS (apt-get install libopenblas-dev) and a C++ compiler; with npm 11, allow the build " +
        `(npm install-scripts approve peft-ts); then run "npm rebuild peft-ts".`,
    );
    return new JsBackend();
  }
}

/** The backend every new tensor uses. */
export function backend(): Backend {
  active ??= isProfiling() ? profiledBackend(choose()) : choose();
  return active;
}

/** Replace the active backend (tests compare backends; existing tensors keep the storages of the old one). */
export function setBackend(b: Backend): void {
  active = b;
}
