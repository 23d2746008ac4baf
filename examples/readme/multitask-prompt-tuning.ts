/** README "Methods" (seed methods draft): the multitask prompt tuning snippet, run on the shipped tiny model. */
import { TaskType, getPeftModel, tensor } from "peft-ts";
import { model } from "./model.js";

import { MultitaskPromptTuningConfig } from "peft-ts";
const peft = getPeftModel(model, MultitaskPromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 8, num_tasks: 3, num_ranks: 1 }));
const inputIds = tensor(Int32Array.from([5, 6, 7, 8, 9, 10]), [2, 3]);
const out = peft.forward({ inputIds, taskIds: tensor(Int32Array.from([0, 2]), [2]) }); // one task per row
const ids = peft.generate({ inputIds, taskIds: tensor(Int32Array.from([0, 2]), [2]), maxNewTokens: 4 });
console.log(out.logits.shape, ids.shape);
