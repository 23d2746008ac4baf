/**
 * Logits processing for one row of next-token scores, as transformers' processors/warpers do it, in this order:
 * repetition penalty, temperature, top-k, top-p. Removed tokens get -Infinity.
 */

/** HF's RepetitionPenaltyLogitsProcessor: scores of tokens already in the sequence are divided by the penalty (multiplied when negative). */
export function applyRepetitionPenalty(scores: Float64Array, previous: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  if (!(penalty > 0)) throw new Error(`repetitionPenalty has to be a strictly positive number, got ${penalty}`);
  for (const id of new Set(previous)) {
    const s = scores[id]!;
    scores[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/** Divide by the temperature (must be > 0). */
export function applyTemperature(scores: Float64Array, temperature: number): void {
  if (!(temperature > 0)) throw new Error(`temperature has to be a strictly positive number, got ${temperature}`);
  if (temperature === 1) return;
  for (let i = 0; i < scores.length; i++) scores[i]! /= temperature;
}

/** Keep the k highest scores (ties with the k-th kept too, as torch.topk + "<" does). */
export function applyTopK(scores: Float64Array, k: number): void {
  if (k <= 0 || k >= scores.length) return;
  const kth = Float64Array.from(scores).sort().reverse()[k - 1]!;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < kth) scores[i] = -Infinity;
}

/** Keep the smallest set of highest-probability tokens whose probability mass exceeds p (at least one token). */
export function applyTopP(scores: Float64Array, p: number): void {
  if (p >= 1) return;
  if (!(p > 0)) throw new Error(`topP has to be in (0, 1], got ${p}`);
  const order = [...scores.keys()].sort((a, b) => scores[a]! - scores[b]!);
  const probs = softmax(scores);
  let cumulative = 0;
  // Ascending order: drop tokens while the mass below them is ≤ 1 − p; the last (most likely) token always stays.
  for (let j = 0; j < order.length - 1; j++) {
    cumulative += probs[order[j]!]!;
    if (cumulative <= 1 - p) scores[order[j]!] = -Infinity;
  }
}

/** Probabilities of a score row (−Infinity → 0). */
export function softmax(scores: Float64Array): Float64Array {
  let max = -Infinity;
  for (const s of scores) max = Math.max(max, s);
  const out = new Float64Array(scores.length);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += out[i] = Math.exp(scores[i]! - max);
  for (let i = 0; i < scores.length; i++) out[i]! /= sum;
  return out;
}

/** Index of the highest score (the first one on ties, like torch.argmax). */
export function argmax(scores: Float32Array | Float64Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/** Draw an index from probabilities with a uniform number u in [0, 1). */
export function sampleIndex(probs: Float64Array, u: number): number {
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! <= 0) continue;
    cumulative += probs[i]!;
    last = i;
    if (u < cumulative) return i;
  }
  return last;
}

/** log softmax(scores)[index], computed stably (max subtracted before the exponentials). */
export function logSoftmaxAt(scores: Float32Array | Float64Array, index: number): number {
  // Indexed loops: for-of over a vocabulary-sized typed array costs several times more (it runs for every token).
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) max = Math.max(max, scores[i]!);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp(scores[i]! - max);
  return scores[index]! - max - Math.log(sum);
}
