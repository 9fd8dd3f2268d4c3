"""Write a tiny random-weight Qwen3 chat model that vLLM can serve on CPU.

Run with the vLLM environment's Python: ``python tiny_chat_model.py OUT TOKENIZER_DIR``.
The answers are gibberish, but the OpenAI protocol, streaming and errors are the
real thing. head_dim is 64 because vLLM's CPU attention rejects small ones.
"""

from __future__ import annotations

import sys

from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def main(out: str, tokenizer_dir: str) -> None:
    """Save the model and a tokenizer with a chat template to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = TEMPLATE
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    Qwen3ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
