/** README "Methods": the LLaMA-Adapter snippet, run on the shipped tiny model. */
import { TaskType, getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { AdaptionPromptConfig } from "peft-ts";
const peft = getPeftModel(model, AdaptionPromptConfig({ task_type: TaskType.CAUSAL_LM, adapter_len: 10, adapter_layers: 2 }));
peft.printTrainableParameters();
