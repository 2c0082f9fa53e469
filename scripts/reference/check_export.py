#!/usr/bin/env python3
"""Loads a `psy train` export in transformers (and its LoRA adapter in peft, when there is one)
and checks they agree: the merged export's logits against base model + PEFT adapter.

Needs: pip install torch transformers peft
Usage: scripts/reference/check_export.py runs/tiny-lora/export
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

export = Path(sys.argv[1])
ids = torch.tensor([[1, 5, 9, 200, 7, 42, 3, 11]])
merged = AutoModelForCausalLM.from_pretrained(export, torch_dtype=torch.float32, attn_implementation="eager")
with torch.no_grad():
    a = merged(input_ids=ids).logits
print(f"transformers loaded {export}: logits {tuple(a.shape)}, finite: {bool(torch.isfinite(a).all())}")
adapter = export / "adapter"
if adapter.is_dir():
    from peft import PeftModel

    base_path = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_path, torch_dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(base, str(adapter))
    with torch.no_grad():
        b = peft_model(input_ids=ids).logits
    diff = (a - b).abs().max().item()
    moved = (b - plain).abs().max().item()
    print(f"peft base + adapter vs merged export: max |diff| {diff:.3e} (the adapter moves logits by up to {moved:.3e})")
    if diff > 1e-4 or moved < 1e-3:
        sys.exit("MISMATCH")
print("ok")
