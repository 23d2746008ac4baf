/**
 * MultitaskPromptEmbedding (peft's): a shared prompt P [rows, D] (prompt tuning's embedding) and, per task t, a
 * rank-r factor cols_t [rows, r] · rows_t [r, D]; task t's prompt is P ⊙ (cols_t · rows_t). Saved as peft saves it:
 * `prompt_embeddings` (P), `prefix_task_cols` [tasks, rows, r], `prefix_task_rows` [tasks, r, D].
 */
import { existsSync } from "node:fs";
import type { EmbeddingLayer } from "../../../nn/index.js";
import {
  zeros,
  defaultGenerator,
  indexSelect,
  matmul,
  mean,
  mul,
  noGrad,
  parameter,
  select,
  unsqueeze,
  contiguous,
  type Tensor,
} from "../../../tensor/index.js";
import { loadSafetensors } from "../../../io/safetensors.js";
import { CheckpointError, ConfigError } from "../../../errors.js";
import { PromptEmbedding } from "../prompt_tuning/model.js";
import type { PromptTuningConfig } from "../prompt_tuning/config.js";
import { SOURCE_INITS, type MultitaskPromptTuningConfig } from "./config.js";

/** Shared prompt times per-task low-rank factors. */
export class MultitaskPromptEmbedding extends PromptEmbedding {
  prefix_task_cols: Tensor;
  prefix_task_rows: Tensor;

  constructor(config: MultitaskPromptTuningConfig, wordEmbeddings: EmbeddingLayer) {
    const source = SOURCE_INITS.includes(config.prompt_tuning_init);
    // The source inits start like RANDOM and then take the source's tensors (peft's order of draws).
    super(
      { ...config, prompt_tuning_init: source ? "RANDOM" : config.prompt_tuning_init } as unknown as PromptTuningConfig,
      wordEmbeddings,
    );
    const tasks = config.num_tasks!,
      ranks = config.num_ranks!,
      D = config.token_dim!;
    this.prefix_task_cols = this.registerParameter(
      "prefix_task_cols",
      parameter(defaultGenerator.normal([tasks, this.rows, ranks], 0, 0.02)),
    );
    this.prefix_task_rows = this.registerParameter(
      "prefix_task_rows",
      parameter(defaultGenerator.normal([tasks, ranks, D], 0, 0.02)),
    );
    // A loaded adapter (inference mode) takes its tensors from its own file; the source is not read again.
    if (source && !config.inference_mode) this.initFromSource(config);
  }

  /** peft's source → target start: the source's shared prompt, and its task factors averaged, picked or left random. */
  private initFromSource(config: MultitaskPromptTuningConfig): void {
    const path = config.prompt_tuning_init_state_dict_path!;
    if (!path.endsWith(".safetensors"))
      throw new ConfigError(
        `prompt_tuning_init_state_dict_path ${path}: only .safetensors source files are read here`,
        "point it at the source adapter's adapter_model.safetensors",
      );
    if (!existsSync(path))
      throw new CheckpointError(
        `prompt_tuning_init_state_dict_path ${path} does not exist`,
        "save the source adapter first and point at its adapter_model.safetensors",
      );
    const state = loadSafetensors(path);
    const get = (k: string): Tensor => {
      const t = state.get(k);
      if (!t) throw new CheckpointError(`${path} has no "${k}"; is it a MULTITASK_PROMPT_TUNING adapter?`);
      return t;
    };
    noGrad(() => {
      const copy = (own: Tensor, t: Tensor, what: string) => {
        if (own.shape.join(",") !== t.shape.join(","))
          throw new CheckpointError(
            `${path}: ${what} has shape [${t.shape.join(", ")}], this adapter's is [${own.shape.join(", ")}]`,
            "use the source's num_virtual_tokens and num_ranks (and num_tasks 1 for the averaged or exact task)",
          );
        own.copy_(contiguous(t));
      };
      copy(this.embedding.weight, get("prompt_embeddings"), "prompt_embeddings");
      if (config.prompt_tuning_init === "ONLY_SOURCE_SHARED") return;
      const cols = get("prefix_task_cols"),
        rows = get("prefix_task_rows");
      if (config.prompt_tuning_init === "AVERAGE_SOURCE_TASKS") {
        copy(this.prefix_task_cols, unsqueeze(mean(cols, 0), 0), "the averaged prefix_task_cols");
        copy(this.prefix_task_rows, unsqueeze(mean(rows, 0), 0), "the averaged prefix_task_rows");
      } else {
        const task = config.prompt_tuning_init_task ?? 0;
        if (task >= cols.shape[0]!)
          throw new ConfigError(`prompt_tuning_init_task ${task} but the source has ${cols.shape[0]} tasks`);
        copy(this.prefix_task_cols, unsqueeze(select(cols, 0, task), 0), "prefix_task_cols");
        copy(this.prefix_task_rows, unsqueeze(select(rows, 0, task), 0), "prefix_task_rows");
      }
    });
    for (const t of state.values()) t.dispose();
  }

  /** Each row's prompt: P ⊙ (cols[task] · rows[task]); taskIds [batch] are required. */
  override encodeBatch(batch: number, taskIds: Tensor | undefined): Tensor {
    if (!taskIds) {
      // A one-task adapter (the target stage) needs no task ids; peft asks for them anyway.
      if (this.prefix_task_cols.shape[0] === 1) return this.encodeBatch(batch, zeros([batch], "int32"));
      throw new ConfigError(
        "MULTITASK_PROMPT_TUNING with several tasks needs taskIds (the task of each batch row) in forward and generate",
      );
    }
    if (taskIds.shape.length !== 1 || taskIds.shape[0] !== batch)
      throw new ConfigError(`taskIds must be [${batch}] (one task per batch row), got [${taskIds.shape.join(", ")}]`);
    const ids = Array.from(taskIds.dataSync());
    const tasks = this.prefix_task_cols.shape[0]!;
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= tasks);
    if (bad !== undefined) throw new ConfigError(`taskIds holds ${bad}, but the adapter has num_tasks ${tasks}`);
    const factor = matmul(
      indexSelect(this.prefix_task_cols, 0, taskIds),
      indexSelect(this.prefix_task_rows, 0, taskIds),
    );
    return mul(this.encode(), factor);
  }

  /** The task factors, saved beside prompt_embeddings. */
  override extraSavedTensors(): Map<string, Tensor> {
    return new Map([
      ["prefix_task_cols", this.prefix_task_cols],
      ["prefix_task_rows", this.prefix_task_rows],
    ]);
  }
}
