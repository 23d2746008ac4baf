/** README "Methods" (seed methods draft): the BitFit snippet, run on the shipped tiny model. */
import { getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { BitFitConfig } from "peft-ts";
const peft = getPeftModel(model, BitFitConfig({ target_modules: ["q_proj", "k_proj", "v_proj"] }));
peft.printTrainableParameters();
