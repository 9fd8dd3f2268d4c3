"""Write tiny random-weight models that vLLM can serve on CPU, for the integration tier.

Run with the vLLM environment's Python: ``python tiny_models.py KIND OUT TOKENIZER_DIR``,
KIND one of:

- ``chat``: a Qwen3 causal LM with a chat template;
- ``qwen3-embed``: the same architecture laid out as Qwen3-Embedding (last-token
  pooling, normalised, declared through sentence-transformers' config files);
- ``rerank``: a BERT cross-encoder (one relevance logit), as bge-reranker serves.

The outputs are meaningless, but the protocols, shapes and errors are the real
thing. head_dim is 64 because vLLM's CPU attention rejects small ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Qwen3Config,
    Qwen3ForCausalLM,
)

TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def qwen3(tokenizer: object, out: Path) -> None:
    """A 2-layer Qwen3 causal LM."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.cls_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.sep_token_id,  # type: ignore[attr-defined]
    )
    Qwen3ForCausalLM(config).save_pretrained(out)


def qwen3_embed(tokenizer: object, out: Path) -> None:
    """Qwen3 with Qwen3-Embedding's pooling: the last token, normalised."""
    qwen3(tokenizer, out)
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 128, "pooling_mode_lasttoken": True}
    ))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))


def rerank(tokenizer: object, out: Path) -> None:
    """A 2-layer BERT cross-encoder with one output."""
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,  # type: ignore[arg-type]
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=512, num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(out)


def main(kind: str, out: str, tokenizer_dir: str) -> None:
    """Save the model and its tokenizer to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    folder = Path(out)
    {"chat": qwen3, "qwen3-embed": qwen3_embed, "rerank": rerank}[kind](tokenizer, folder)
    if kind == "chat":
        tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
