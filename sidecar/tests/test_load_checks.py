"""The checks every load runs: UA's scaling reaches attention, and the fast engine agrees with the
naive one; a family that fails either is refused with a message that says which and by how much."""

from __future__ import annotations

import pytest
import tiny_models
from transformers import GemmaConfig, Llama4TextConfig, PaliGemmaConfig, SiglipVisionConfig

from sahara_sidecar import loading
from sahara_sidecar.load_checks import check_engines_agree, check_query_ablation


def save_paligemma(directory):
    """A tiny PaliGemma: its prefix attention is not what the fast engine replays once prompts of
    different lengths share a padded batch (log-probs off by nats, no error)."""
    tokenizer = tiny_models.build_tokenizer()
    text = GemmaConfig(num_key_value_heads=2, head_dim=16, **tiny_models.common_config(tokenizer))
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = PaliGemmaConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
    return tiny_models.save_from_config(config, tokenizer, directory)


def save_llama4_text(directory):
    """A tiny Llama 4 (text): its weightless qk_norm normalises queries after the rotary embedding,
    where the ablation hooks do not act, so UA's scaling never reaches attention."""
    tokenizer = tiny_models.build_tokenizer()
    common = tiny_models.common_config(tokenizer)
    config = Llama4TextConfig(
        num_key_value_heads=2, head_dim=16, intermediate_size_mlp=128, num_local_experts=2, use_qk_norm=True, **common
    )
    return tiny_models.save_from_config(config, tokenizer, directory)


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3", "phi3", "gemma3_vision", "mistral3_vision"])
def test_served_families_pass_with_rounding_only(tiny_lms, family):
    distance, hidden = check_engines_agree(tiny_lms[family])
    assert distance < 1e-5 and hidden < 1e-5
    assert check_query_ablation(tiny_lms[family]) < 1e-6, (
        "the named head's query arrives scaled, the others as they were"
    )


def refusal(directory) -> str:
    """The LoadError message of loading this model the way the sidecar does."""
    with pytest.raises(loading.LoadError) as caught:
        loading.load(str(directory), device="cpu", dtype="float32")
    return str(caught.value)


def test_queries_normalised_out_of_the_hooks_sight_are_refused(tmp_path):
    message = refusal(save_llama4_text(tmp_path / "llama4"))
    assert "model type 'llama4_text' is not supported: UA's query scaling does not reach attention" in message
    assert "query x 0.5 arrives as x 1" in message


def test_vision_language_model_served_through_its_language_model(tiny_lms):
    lm = tiny_lms["mistral3_vision"]  # model type mistral3: no causal-LM class in transformers
    assert type(lm.model).__name__ == "Mistral3ForConditionalGeneration"
    assert lm.model.config.model_type == "mistral3"


def test_disagreeing_family_is_refused_at_load(tmp_path):
    message = refusal(save_paligemma(tmp_path / "paligemma"))
    assert "model type 'paligemma' is not supported" in message
    assert "differ from the naive engine's by" in message and "probe prompt 1" in message


def test_unknown_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(loading.LoadError, match="neither a causal LM nor a vision-language model"):
        loading.load(str(tmp_path), device="cpu", dtype="float32")
