/** README "Methods" (seed methods draft): the Freeze snippet, run on the shipped tiny model. */
import { getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { FreezeConfig } from "peft-ts";
const peft = getPeftModel(model, FreezeConfig({ num_trainable_layers: 1, trainable_modules: ["norm"] }));
peft.printTrainableParameters();
