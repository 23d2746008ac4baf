/** Where the demo's shipped files live (resolved from the repository root, wherever the compiled script runs). */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the peft-ts repository root (package.json) above the demo script");
    dir = up;
  }
  return dir;
}

/** The repository's assets/ folder. */
export const ASSETS = join(repoRoot(), "assets");
/** The shipped base model (pretrained by pretrain.ts). */
export const MODEL_DIR = join(ASSETS, "tiny-bard");
/** The identity instruction set the demo fine-tunes on. */
export const IDENTITY_DATA = join(ASSETS, "identity.json");
