#!/usr/bin/env python3
"""Reference for psy's LoRA: one PEFT LoRA step on the tiny Qwen3 fixture, in PyTorch.

Writes tests/fixtures/qwen3-train/lora/ :
  adapter_model.safetensors, adapter_config.json  (saved by peft itself)
  reference.json  loss, adapter gradients, logits unmerged and merged, adapters after one
                  torch.optim.AdamW step, and a 5-step loss curve on the same batch.

The batch is the one of tiny-qwen3-untied-step.json (two right-padded rows, prompt and padding
labelled -100). B is set to small random values (PEFT initialises it to zero, which would make
every gradient of A zero and the test blind to A).

Needs: pip install torch transformers peft
Usage: scripts/reference/lora_step.py
"""
import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests/fixtures"
OUT = FIX / "qwen3-train/lora"

torch.manual_seed(0)
step = json.loads((FIX / "qwen3-train/tiny-qwen3-untied-step.json").read_text())
model = AutoModelForCausalLM.from_pretrained(
    FIX / "qwen3" / step["model_dir"], torch_dtype=torch.float32, attn_implementation="eager"
)
cfg = LoraConfig(
    r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    target_modules=["q_proj", "v_proj", "down_proj"],
    bias="none",
    task_type="CAUSAL_LM",
)
model = get_peft_model(model, cfg)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.copy_(torch.randn_like(p) * 0.05)
model.train()
OUT.mkdir(parents=True, exist_ok=True)
model.save_pretrained(OUT)
(OUT / "README.md").unlink(missing_ok=True)  # peft's model-card template
acfg = json.loads((OUT / "adapter_config.json").read_text())
acfg["base_model_name_or_path"] = "tests/fixtures/qwen3/" + step["model_dir"]
(OUT / "adapter_config.json").write_text(json.dumps(acfg, indent=2))

ids = torch.tensor(step["input_ids"])
mask = torch.tensor(step["attention_mask"])
labels = torch.tensor(step["labels"])


def loss_of(m):
    return m(input_ids=ids, attention_mask=mask, labels=labels).loss


base_names = [n for n, p in model.named_parameters() if "lora_" not in n]
assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)

with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits
loss = loss_of(model)
loss.backward()
adapters = {n: p for n, p in model.named_parameters() if "lora_" in n}


def key(n):
    # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> PEFT file name
    return n.replace(".default", "")


grads = {key(n): p.grad.flatten().tolist() for n, p in adapters.items()}
grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in adapters.values())).item()
opt = torch.optim.AdamW(adapters.values(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
opt.step()
after = {key(n): p.detach().flatten().tolist() for n, p in adapters.items()}
losses = [loss.item()]
for _ in range(4):
    opt.zero_grad()
    l = loss_of(model)
    l.backward()
    opt.step()
    losses.append(l.item())

# Merge a fresh copy of the saved adapter (unmerged weights as written) and compare logits.
fresh = AutoModelForCausalLM.from_pretrained(
    FIX / "qwen3" / step["model_dir"], torch_dtype=torch.float32, attn_implementation="eager"
)
from peft import PeftModel

merged = PeftModel.from_pretrained(fresh, str(OUT)).merge_and_unload()
with torch.no_grad():
    merged_logits = merged(input_ids=ids, attention_mask=mask).logits

ref = {
    "model_dir": step["model_dir"],
    "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]},
    "loss": loss.item(),
    "adapter_grad_l2": grad_norm,
    "grads": grads,
    "adamw": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
    "adapters_after_1_step": after,
    "losses_5_steps_same_batch": losses,
    "logits_row0_first_positions": logits[0, :4].tolist(),
    "merged_logits_row0_first_positions": merged_logits[0, :4].tolist(),
    "torch": torch.__version__,
}
import peft, transformers

ref["peft"] = peft.__version__
ref["transformers"] = transformers.__version__
(OUT / "reference.json").write_text(json.dumps(ref))
print("loss", ref["loss"], "grad l2", grad_norm, "losses", losses)
