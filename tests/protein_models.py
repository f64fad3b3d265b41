"""Tiny random ESM models in the real transformers formats, saved like a user's local copy."""

import torch

from didi_seq_protein.alphabet import esm_tokens


def esm_config(**extra):
    from transformers import EsmConfig

    return EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=1026, position_embedding_type="rotary", token_dropout=True,
                     mask_token_id=32, pad_token_id=1, emb_layer_norm_before=False, **extra)


def save_tiny_dplm(path, seed=0):
    """A DPLM-shaped checkpoint: EsmForMaskedLM weights, config.json and the ESM vocab.txt."""
    from transformers import EsmForMaskedLM

    torch.manual_seed(seed)
    model = EsmForMaskedLM(esm_config(architectures=["EsmForMaskedLM"]))
    with torch.no_grad():
        model.lm_head.decoder.weight.normal_(std=1.0)  # samples depend on the input, not only on the bias
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(esm_tokens()) + "\n")
    return path


def save_tiny_esmfold(path, seed=0, spread=3.0, confident=False):
    """EsmForProteinFolding (~170k parameters); the lDDT head is perturbed so pLDDT varies (fresh, it is exactly 0.5).
    ``confident``: the head's bias favours the top lDDT bins, so every pLDDT lies well above 0.7."""
    from transformers import EsmForProteinFolding

    cfg = esm_config(is_folding_model=True, vocab_list=list(esm_tokens()), esmfold_config={
        "fp16_esm": False, "lddt_head_hid_dim": 16,
        "trunk": {"num_blocks": 1, "sequence_state_dim": 64, "pairwise_state_dim": 32, "sequence_head_width": 16,
                  "pairwise_head_width": 16, "max_recycles": 1, "chunk_size": None,
                  "structure_module": {"sequence_dim": 32, "pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 16,
                                       "num_heads_ipa": 2, "num_qk_points": 2, "num_v_points": 2, "num_blocks": 1}}})
    torch.manual_seed(seed)
    model = EsmForProteinFolding(cfg).eval()
    with torch.no_grad():
        for p in model.lddt_head.parameters():
            p.normal_(std=spread)
        if confident:
            model.lddt_head[-1].weight.zero_()
            model.lddt_head[-1].bias.copy_(torch.tensor([20.0 * (b >= 45) for b in range(50)] * 37))
    model.save_pretrained(path)
    return path
