/** README "Methods" (docs/readme-drafts/methods-b.md): the HRA, Bone, LN tuning and Poly snippets, run on the shipped tiny model. */
import { BoneConfig, HRAConfig, LNTuningConfig, TaskType, getPeftModel } from "peft-ts";
import { AutoModelForCausalLM } from "peft-ts";
import { MODEL } from "./model.js";

for (const config of [
  HRAConfig({ task_type: TaskType.CAUSAL_LM, r: 8 }),
  BoneConfig({ task_type: TaskType.CAUSAL_LM, r: 64 }),
  LNTuningConfig({ task_type: TaskType.CAUSAL_LM }),
]) getPeftModel(AutoModelForCausalLM.fromPretrained(MODEL), config).printTrainableParameters();

const model = AutoModelForCausalLM.fromPretrained(MODEL);

import { PolyConfig, tensor } from "peft-ts";
const peft = getPeftModel(model, PolyConfig({ task_type: TaskType.CAUSAL_LM, r: 8, n_tasks: 3, n_skills: 4, n_splits: 2 }));
const taskIds = tensor(Int32Array.from([2, 0]), [2], "int32");            // one task per batch row
const inputIds = tensor(Int32Array.from([5, 6, 7, 8, 9, 10]), [2, 3], "int32");
const { logits } = peft.forward({ inputIds, taskIds });
const tokens = peft.generate({ inputIds, taskIds, maxNewTokens: 4 });
console.log(logits.shape, tokens.shape);
