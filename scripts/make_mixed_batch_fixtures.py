"""Golden files for mixed-adapter batches (peft's adapter_names), written to test/fixtures/mixed-batch/.

For a tiny random GPT-2 (Conv1D, fan_in_fan_out) and a tiny random LLaMA, two LoRA adapters with random A and B
(one of them also on the token embedding) are saved in peft's format, and the logits of one forward pass where each
row uses its own adapter, or none ("__base__"), are saved with the input ids.

Run: source /work/shared/pyref/env.sh; /usr/bin/python3 scripts/make_mixed_batch_fixtures.py
"""
import contextlib
import functools
import json
import os
import shutil

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "mixed-batch")
# Adapter names are not substrings of module names: peft's save strips ".<name>" from every key.
ROW_ADAPTERS = ["left", "__base__", "right", "left"]

MODELS = {
    "gpt2": (
        transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
        dict(target_modules=["c_attn", "c_proj"], fan_in_fan_out=True),
        dict(target_modules=["c_attn", "c_fc", "wte"], fan_in_fan_out=True),
    ),
    "llama": (
        transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32),
        dict(target_modules=["q_proj", "v_proj"]),
        dict(target_modules=["k_proj", "down_proj", "embed_tokens"]),
    ),
}


@contextlib.contextmanager
def row_adapters(model, names):
    """peft's adapter_names: what model(..., adapter_names=names) does, for torch 1.13.

    peft passes adapter_names to every LoRA layer through forward pre-hooks registered with with_kwargs=True, which
    torch 1.13 lacks; here each LoRA layer's forward gets the argument directly, so peft's own layer code
    (_check_forward_args, _mixed_batch_forward) computes the result.
    """
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        layer.forward = functools.partial(type(layer).forward, layer, adapter_names=names)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    index = {"row_adapters": ROW_ADAPTERS, "models": {}}
    for name, (config, a_targets, b_targets) in MODELS.items():
        torch.manual_seed(0)
        base = transformers.AutoModelForCausalLM.from_config(config).eval()
        folder = os.path.join(OUT, name)
        base.save_pretrained(os.path.join(folder, "model"), safe_serialization=True)
        a = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, task_type="CAUSAL_LM", **a_targets)
        b = LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, task_type="CAUSAL_LM", **b_targets)
        model = get_peft_model(base, a, adapter_name="left")
        model.add_adapter("right", b)
        model.save_pretrained(os.path.join(folder, "adapters"), selected_adapters=["left", "right"], safe_serialization=True)
        # Reload from disk so the logits come from exactly the saved weights.
        base = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(folder, "model")).eval()
        model = PeftModel.from_pretrained(base, os.path.join(folder, "adapters", "left"), adapter_name="left")
        model.load_adapter(os.path.join(folder, "adapters", "right"), adapter_name="right")
        model.eval()
        ids = torch.randint(0, 64, (len(ROW_ADAPTERS), 6), generator=torch.Generator().manual_seed(1))
        with torch.no_grad(), row_adapters(model, ROW_ADAPTERS):
            logits = model(input_ids=ids).logits
        save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.contiguous()}, os.path.join(folder, "expected.safetensors"))
        index["models"][name] = {"peft": peft.__version__, "transformers": transformers.__version__}
    for name in MODELS:
        os.remove(os.path.join(OUT, name, "adapters", "README.md"))  # a model card, not needed by the tests
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
