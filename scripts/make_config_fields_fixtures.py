"""Write the defaults of every PEFT config (peft 0.15.2) and of TrainingArguments (transformers 4.44) as JSON.

The config-validation test compares peft-ts's field tables with them, so that every field and default matches the
Python libraries. Run with the reference libraries: `source ../shared/pyref/env.sh && /usr/bin/python3 scripts/make_config_fields_fixtures.py`.
"""
import dataclasses
import json
import os

import peft
import transformers

OUT = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "config-fields")


def plain(value):
    """A dataclass default as JSON (enums by value, sets as sorted lists)."""
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


def defaults(cls, **required):
    config = cls(**required)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name == "runtime_config":  # never saved by peft
            continue
        out[f.name] = plain(getattr(config, f.name))
    for k in required:
        out[k] = plain(dataclasses.fields(cls)[[f.name for f in dataclasses.fields(cls)].index(k)].default)
    return out


peft_configs = {
    "LORA": defaults(peft.LoraConfig),
    "ADALORA": defaults(peft.AdaLoraConfig, total_step=10),
    "IA3": defaults(peft.IA3Config),
    "LOHA": defaults(peft.LoHaConfig),
    "LOKR": defaults(peft.LoKrConfig),
    "PROMPT_TUNING": defaults(peft.PromptTuningConfig),
    "P_TUNING": defaults(peft.PromptEncoderConfig),
    "PREFIX_TUNING": defaults(peft.PrefixTuningConfig),
    "ADAPTION_PROMPT": {f.name: plain(f.default) for f in dataclasses.fields(peft.AdaptionPromptConfig)},
    "HRA": defaults(peft.HRAConfig),
    "BONE": defaults(peft.BoneConfig),
    "LN_TUNING": defaults(peft.LNTuningConfig),
    "POLY": defaults(peft.PolyConfig),
    "FOURIERFT": defaults(peft.FourierFTConfig),
    "VERA": defaults(peft.VeraConfig),
    "OFT": defaults(peft.OFTConfig),
    "BOFT": defaults(peft.BOFTConfig),
    "XLORA": defaults(peft.XLoraConfig),
}
for fields in peft_configs.values():
    fields.pop("peft_type", None)

args = {}
for f in dataclasses.fields(transformers.TrainingArguments):
    if f.name.startswith("_"):
        continue
    value = f.default if f.default is not dataclasses.MISSING else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    args[f.name] = plain(value)

os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "python-defaults.json"), "w") as fh:
    everything = {"peft": peft.__version__, "transformers": transformers.__version__, "configs": peft_configs, "training_arguments": args}
    json.dump(everything, fh, indent=1, sort_keys=True)
    fh.write("\n")
