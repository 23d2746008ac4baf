/** `peft push DIR REPO_ID`: upload an adapter or model folder to the Hugging Face Hub in one commit. */
import { parseArgs } from "node:util";
import { uploadFolder } from "../io/hub-upload.js";
import { CliError } from "./errors.js";
import { folderKind } from "./folders.js";

/** Help text of `peft push`. */
export const PUSH_USAGE = `usage: peft push DIR REPO_ID [--private] [--message TEXT] [--revision BRANCH]

Upload every file of DIR (an adapter or model folder) to the Hub repo REPO_ID ("org/name"), creating the repo
if needed, in one commit. The token comes from HF_TOKEN (or \`huggingface-cli login\`); HF_ENDPOINT picks the Hub.
  --private         create the repo private (when it does not exist yet)
  --message TEXT    the commit message (default "Upload folder using peft-ts")
  --revision NAME   the branch to commit to (default main)
`;

/** Run `peft push`. */
export async function push(argv: string[]): Promise<void> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { private: { type: "boolean" }, message: { type: "string" }, revision: { type: "string" } },
  });
  if (positionals.length !== 2) {
    throw new CliError(
      `peft push takes a folder and a repo id, got ${positionals.length} argument(s)`,
      "usage: peft push DIR REPO_ID",
    );
  }
  const [dir, repoId] = positionals as [string, string];
  const kind = folderKind(dir);
  if (kind !== "adapter" && kind !== "model") {
    throw new CliError(
      `${dir} is not an adapter or model folder ` +
        `(${kind === "missing" ? "it does not exist" : "no adapter_config.json or config.json"})`,
      "pass the output_dir of `peft train` or `peft merge`",
    );
  }
  const info = await uploadFolder(repoId, dir, {
    ...(v.private ? { private: true } : {}),
    ...(v.message ? { commitMessage: v.message } : {}),
    ...(v.revision ? { revision: v.revision } : {}),
  });
  console.log(`pushed ${kind} ${dir} to ${repoId}: ${info.commitUrl}`);
}
