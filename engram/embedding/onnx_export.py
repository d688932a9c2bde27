"""Export a sentence-transformers model directory's transformer to ONNX: ``python -m engram.embedding.onnx_export
MODEL_DIR OUT.onnx``.

Run in its own process by ``OnnxEmbedder`` (once per machine and model), so torch and transformers are
only ever loaded here, never in a worker or the API. The graph takes ``input_ids``, ``attention_mask``
and ``token_type_ids`` (batch × sequence, both dynamic) and returns ``last_hidden_state``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OPSET = 17


def export(model_dir: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.model(  # type: ignore[no-any-return]
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.tensor([[101, 7592, 102]])
    dynamic = {name: {0: "batch", 1: "sequence"} for name in [*INPUTS, "last_hidden_state"]}
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(),
            (sample, torch.ones_like(sample), torch.zeros_like(sample)),
            str(tmp),
            input_names=INPUTS,
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(out)  # atomic: a reader sees the whole file or none


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]))
