/** The model's lists of numbered layers (`model.layers.0`, `transformer.h.1`), for methods that act per layer (Freeze, bottleneck adapters). */
import type { Module } from "../nn/index.js";

/** The names layer lists go by in the supported families. */
export const LAYER_LIST_NAMES = ["layers", "h", "layer", "block", "blocks"];

/** Each layer list's layer paths by index (`model.layers` → [model.layers.0, …]); `pattern` names the list (null: any of LAYER_LIST_NAMES). */
export function layerLists(model: Module, pattern: string | null): Map<string, string[]> {
  const names = pattern === null ? LAYER_LIST_NAMES : [pattern];
  const lists = new Map<string, string[]>();
  for (const [path] of model.namedModules()) {
    const m = /^(?:(.*)\.)?([^.]+)\.(\d+)$/.exec(path);
    if (!m || !names.includes(m[2]!)) continue;
    const list = m[1] ? `${m[1]}.${m[2]}` : m[2]!;
    const layers = lists.get(list) ?? [];
    layers[Number(m[3])] = path;
    lists.set(list, layers);
  }
  return lists;
}
