/** README "Methods" (seed methods draft): the DiffPruning snippet, run on the shipped tiny model. */
import { getPeftModel, type DiffPruningModel } from "peft-ts";
import { model } from "./model.js";

import { DiffPruningConfig } from "peft-ts";
const peft = getPeftModel(model, DiffPruningConfig({ target_modules: "all-linear", l0_lambda: 0.5, target_sparsity: 0.995 }));
// … train …
(peft.base_model as DiffPruningModel).pruneToSparsity(); // keeps the largest 0.5 % of the gated differences
