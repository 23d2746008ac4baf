/** README "Methods": the prefix tuning snippet, run on the shipped tiny model. */
import { TaskType, getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { PrefixTuningConfig } from "peft-ts";
const peft = getPeftModel(model, PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 15, prefix_projection: true }));
peft.printTrainableParameters();
