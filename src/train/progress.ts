/**
 * Progress callbacks (the Trainer shows the bar on a terminal by default; `peft train` uses both): a progress bar
 * on stderr (step/total, loss, learning rate, tokens/s, ETA),
 * redrawn in place on a terminal and one plain line per log entry otherwise; and training_log.jsonl, one JSON
 * object per log entry, written as training goes.
 */
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { TrainingArguments } from "./arguments.js";
import type { LogEntry, TrainerCallback, TrainerState } from "./callbacks.js";
import { toJson } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    r = s % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

/** A number in a short form for the progress line. */
function short(v: number | undefined, digits = 4): string {
  if (v === undefined) return "-";
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(2) : v.toFixed(digits);
}

/** Where the progress goes: a stream with an optional terminal width. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** The progress bar (terminal) or line-per-log (pipes, files, CI) display. */
export class ProgressCallback implements TrainerCallback {
  private start = 0;
  private startStep = 0;
  private startTokens = 0;
  private loss: number | undefined;
  private lr: number | undefined;
  private drawn = false;
  /** After onTrainEnd (a final evaluation may still log): plain lines, no bar. */
  private ended = false;
  private readonly tty: boolean;

  constructor(
    private readonly out: ProgressStream = process.stderr,
    tty?: boolean,
  ) {
    this.tty = tty ?? out.isTTY === true;
  }

  onTrainBegin(_args: TrainingArguments, state: TrainerState): void {
    this.ended = false;
    this.start = performance.now();
    this.startStep = state.global_step;
    this.startTokens = state.num_input_tokens_seen;
    const last = [...state.log_history].reverse().find((e) => e["loss"] !== undefined);
    this.loss = last?.["loss"];
    this.lr = last?.["learning_rate"];
    if (!this.tty)
      this.out.write(
        `training: ${state.max_steps} steps${state.global_step > 0 ? `, resuming at step ${state.global_step}` : ""}\n`,
      );
    else this.draw(state);
  }

  onStepEnd(_args: TrainingArguments, state: TrainerState): void {
    if (this.tty) this.draw(state);
  }

  onLog(_args: TrainingArguments, state: TrainerState, logs: LogEntry): void {
    if (logs["loss"] !== undefined) {
      this.loss = logs["loss"];
      this.lr = logs["learning_rate"];
      if (!this.tty || this.ended) this.out.write(`${this.status(state, logs["tokens_per_second"])}\n`);
      else this.draw(state);
    }
    const evalMetrics = Object.entries(logs).filter(([k]) => k.startsWith("eval_") && k !== "eval_runtime");
    if (evalMetrics.length > 0) {
      const metrics = evalMetrics.map(([k, v]) => `${k} ${short(v)}`).join(" | ");
      this.line(`step ${state.global_step}/${state.max_steps} | ${metrics}`, state);
    }
  }

  onSave(_args: TrainingArguments, state: TrainerState, checkpointDir: string): void {
    this.line(`saved checkpoint ${checkpointDir}`, state);
  }

  onTrainEnd(_args: TrainingArguments, state: TrainerState): void {
    if (this.tty) {
      this.draw(state);
      this.out.write("\n");
      this.drawn = false;
    }
    this.ended = true;
    const seconds = (performance.now() - this.start) / 1000;
    this.out.write(`training done: ${state.global_step - this.startStep} steps in ${formatDuration(seconds)}\n`);
  }

  /** Print a line without breaking the bar: clear it, print, redraw. */
  private line(text: string, state: TrainerState): void {
    const bar = this.tty && !this.ended;
    if (bar && this.drawn) this.out.write("\r\x1b[K");
    this.out.write(`${text}\n`);
    if (bar) this.draw(state);
  }

  private elapsed(): number {
    return (performance.now() - this.start) / 1000;
  }

  private status(state: TrainerState, tokensPerSecond?: number): string {
    const done = state.global_step - this.startStep;
    const secs = this.elapsed();
    const tps = tokensPerSecond ?? (secs > 0 ? (state.num_input_tokens_seen - this.startTokens) / secs : Number.NaN);
    const eta = done > 0 ? (secs / done) * (state.max_steps - state.global_step) : Number.NaN;
    return [
      `step ${state.global_step}/${state.max_steps}`,
      `loss ${short(this.loss)}`,
      `lr ${this.lr === undefined ? "-" : this.lr.toExponential(2)}`,
      `${Number.isFinite(tps) ? Math.round(tps).toLocaleString("en-US") : "-"} tok/s`,
      `ETA ${formatDuration(eta)}`,
    ].join(" | ");
  }

  private draw(state: TrainerState): void {
    const width = 24;
    const frac = state.max_steps > 0 ? Math.min(1, state.global_step / state.max_steps) : 0;
    const filled = Math.round(frac * width);
    let text = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${this.status(state)}`;
    const cols = this.out.columns;
    if (cols && text.length > cols - 1) text = text.slice(0, cols - 1);
    this.out.write(`\r\x1b[K${text}`);
    this.drawn = true;
  }
}

/**
 * training_log.jsonl: one JSON object per log entry. At the start it is rewritten from the trainer state, so a
 * resumed run's file holds the entries up to its checkpoint and then continues (no duplicated steps).
 */
export class JsonlLogCallback implements TrainerCallback {
  constructor(readonly path: string) {}

  onTrainBegin(_args: TrainingArguments, state: TrainerState): void {
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileAtomic(this.path, state.log_history.map((e) => `${toJson(e)}\n`).join(""));
  }

  onLog(_args: TrainingArguments, _state: TrainerState, logs: LogEntry): void {
    appendFileSync(this.path, `${toJson(logs)}\n`);
  }
}
