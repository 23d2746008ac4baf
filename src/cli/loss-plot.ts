/**
 * The loss curve of a training run as a small standalone SVG, written by hand (no plotting dependency): axes
 * with round-number ticks, the training loss as a polyline, eval losses as points.
 */

/** A log entry (trainer_state.json's log_history / training_log.jsonl). */
export type LogRecord = Record<string, number | null | undefined>;

/** Options of lossCurveSvg. */
export interface LossPlotOptions {
  width?: number;
  height?: number;
  title?: string;
}

/** About `count` round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < hi) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function label(v: number): string {
  return Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(6)));
}

const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** The training-loss points (step, loss) of a log history. */
export function trainingLossPoints(history: readonly LogRecord[]): [number, number][] {
  return history.filter((e) => num(e["loss"]) && num(e["step"])).map((e) => [e["step"] as number, e["loss"] as number]);
}

/** The eval-loss points (step, eval_loss) of a log history. */
export function evalLossPoints(history: readonly LogRecord[]): [number, number][] {
  return history
    .filter((e) => num(e["eval_loss"]) && num(e["step"]))
    .map((e) => [e["step"] as number, e["eval_loss"] as number]);
}

/** An SVG document plotting the training loss (polyline) and eval loss (points) against the step. */
export function lossCurveSvg(history: readonly LogRecord[], opts: LossPlotOptions = {}): string {
  const W = opts.width ?? 640,
    H = opts.height ?? 400;
  const m = { left: 64, right: 20, top: 36, bottom: 48 };
  const pw = W - m.left - m.right,
    ph = H - m.top - m.bottom;
  const train = trainingLossPoints(history),
    evals = evalLossPoints(history);
  const all = [...train, ...evals];
  const steps = all.map(([s]) => s),
    losses = all.map(([, l]) => l);
  const xt = niceTicks(0, Math.max(1, ...steps), 6);
  const yt = niceTicks(all.length ? Math.min(...losses) : 0, all.length ? Math.max(...losses) : 1, 5);
  const [x0, x1] = [xt[0]!, xt[xt.length - 1]!],
    [y0, y1] = [yt[0]!, yt[yt.length - 1]!];
  const X = (s: number) => (m.left + ((s - x0) / (x1 - x0)) * pw).toFixed(2);
  const Y = (l: number) => (m.top + ph - ((l - y0) / (y1 - y0)) * ph).toFixed(2);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ` +
      `${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${W / 2}" y="${m.top / 2 + 6}" text-anchor="middle" ` +
      `font-size="14">${esc(opts.title ?? "Training loss")}</text>`,
  );
  // grid and ticks
  for (const t of xt) {
    const x = X(t);
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#eee"/>`);
    out.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${esc(label(t))}</text>`);
  }
  for (const t of yt) {
    const y = Y(t);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eee"/>`);
    out.push(`<line x1="${m.left - 5}" y1="${y}" x2="${m.left}" y2="${y}" stroke="black"/>`);
    out.push(`<text x="${m.left - 8}" y="${(Number(y) + 4).toFixed(2)}" text-anchor="end">${esc(label(t))}</text>`);
  }
  // axes
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 10}" text-anchor="middle">step</text>`);
  out.push(
    `<text x="16" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.top + ph / 2})">loss</text>`,
  );
  // data
  if (train.length > 0) {
    out.push(
      `<polyline class="train-loss" fill="none" stroke="#1f77b4" stroke-width="2" ` +
        `points="${train.map(([s, l]) => `${X(s)},${Y(l)}`).join(" ")}"/>`,
    );
    if (train.length === 1)
      out.push(
        `<circle class="train-loss-point" cx="${X(train[0]![0])}" cy="${Y(train[0]![1])}" r="3" fill="#1f77b4"/>`,
      );
  }
  for (const [s, l] of evals) out.push(`<circle class="eval-loss" cx="${X(s)}" cy="${Y(l)}" r="4" fill="#ff7f0e"/>`);
  if (all.length === 0)
    out.push(
      `<text x="${m.left + pw / 2}" y="${m.top + ph / 2}" text-anchor="middle" fill="#888">no losses logged</text>`,
    );
  // legend
  const lx = m.left + pw - 130,
    ly = m.top + 8;
  out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 20}" y2="${ly}" stroke="#1f77b4" stroke-width="2"/>`);
  out.push(`<text x="${lx + 26}" y="${ly + 4}">training loss</text>`);
  if (evals.length > 0) {
    out.push(`<circle cx="${lx + 10}" cy="${ly + 18}" r="4" fill="#ff7f0e"/>`);
    out.push(`<text x="${lx + 26}" y="${ly + 22}">eval loss</text>`);
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
