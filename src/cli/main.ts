#!/usr/bin/env node
/**
 * The `peft` command: train, generate, merge, info. Errors are one line and a hint (exit code 1); --debug
 * shows the stack trace instead. Warnings are printed as "warning: …" lines on stderr.
 */
import { readFileSync } from "node:fs";
import { CliError, hintFor, oneLine } from "./errors.js";
import { resolveHubArguments } from "./hub-args.js";
import { joinNegativeValues } from "./options.js";

const COMMANDS = ["train", "generate", "merge", "export", "info", "push", "serve"] as const;
type Command = (typeof COMMANDS)[number];

const USAGE = `usage: peft <command> [options]   (peft <command> --help for its options)

commands:
  train CONFIG        fine-tune a model with a PEFT method from a JSON/YAML config
  generate            generate text with a model, with or without an adapter
  merge               merge an adapter into its base model and save a plain model
  export gguf|ollama  write a model or LoRA adapter for llama.cpp / Ollama
  info DIR            describe a model or adapter folder
  push DIR REPO_ID    upload an adapter or model folder to the Hugging Face Hub
  serve               serve a model and its LoRA adapters with OpenAI's HTTP API

--model, --adapter and --tokenizer take a local folder or a Hub id (org/name), downloaded into the
huggingface_hub cache (HF_HOME, HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE apply).

global options:
  --debug             show stack traces of errors
  --version           print the peft-ts version
`;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Usage text of a command (loaded lazily with the command, so `peft info` never loads the trainer). */
async function load(cmd: Command): Promise<{ run: (argv: string[]) => void | Promise<void>; usage: string }> {
  switch (cmd) {
    case "train": {
      const m = await import("./train.js");
      return { run: m.train, usage: m.TRAIN_USAGE };
    }
    case "generate": {
      const m = await import("./generate.js");
      return { run: m.generate, usage: m.GENERATE_USAGE };
    }
    case "merge": {
      const m = await import("./merge.js");
      return { run: m.merge, usage: m.MERGE_USAGE };
    }
    case "export": {
      const m = await import("./export.js");
      return { run: m.exportCommand, usage: m.EXPORT_USAGE };
    }
    case "info": {
      const m = await import("./info.js");
      return { run: m.info, usage: m.INFO_USAGE };
    }
    case "push": {
      const m = await import("./push.js");
      return { run: m.push, usage: m.PUSH_USAGE };
    }
    case "serve": {
      const m = await import("./serve.js");
      return { run: m.serve, usage: m.SERVE_USAGE };
    }
  }
}

/**
 * Print warnings at once, as one "warning: …" line each. Node's default handler prints them on a later tick
 * (with the pid and a trace hint), which for a command that works synchronously means after all the work.
 */
function installWarningPrinter(debug: boolean): void {
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const message = typeof warning === "string" ? warning : warning.message;
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    if (type === "ExperimentalWarning" || type === "DeprecationWarning") return;
    const stack = debug ? (typeof warning === "string" ? new Error(message).stack : warning.stack) : undefined;
    process.stderr.write(`warning: ${oneLine(message)}\n${stack ? `${stack.split("\n").slice(1).join("\n")}\n` : ""}`);
  }) as typeof process.emitWarning;
}

/** Parse the command line and run; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  const args = argv.filter((a) => a !== "--debug");
  installWarningPrinter(debug);
  const cmd = args[0];
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    (cmd === undefined ? process.stderr : process.stdout).write(USAGE);
    return cmd === undefined ? 1 : 0;
  }
  if (cmd === "--version" || cmd === "-v") {
    console.log(version());
    return 0;
  }
  try {
    if (!(COMMANDS as readonly string[]).includes(cmd)) {
      const guess = COMMANDS.find((c) => c.startsWith(cmd.slice(0, 2)));
      throw new CliError(
        `unknown command "${cmd}"${guess ? ` (did you mean "${guess}"?)` : ""}`,
        `commands: ${COMMANDS.join(", ")} (peft --help)`,
      );
    }
    const { run, usage } = await load(cmd as Command);
    const rest = joinNegativeValues(args.slice(1));
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(usage);
      return 0;
    }
    try {
      await run(await resolveHubArguments(rest));
    } catch (err) {
      // node:util parseArgs errors (unknown option, missing value) name the option; point at the usage.
      const code = (err as { code?: string }).code;
      if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))
        throw new CliError(oneLine(err), `see peft ${cmd} --help`);
      throw err;
    }
    return 0;
  } catch (err) {
    if (debug) {
      process.stderr.write(`${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
    } else {
      process.stderr.write(`error: ${oneLine(err)}\nhint: ${hintFor(err)}\n`);
    }
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
