"""load_backbone on folders written by transformers itself, and on our own layout."""

import json

import numpy as np
import pytest

from kizzasi_lite import WeightsError, load_backbone, save_backbone
from kizzasi_lite.backends import get_namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.models import Backbone, architecture

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _reference(kind):
    torch.manual_seed(0)
    if kind == "mamba":
        cfg = transformers.MambaConfig(
            hidden_size=16, state_size=4, num_hidden_layers=2, vocab_size=10
        )
        return transformers.MambaModel(cfg)
    if kind == "mamba2":
        cfg = transformers.Mamba2Config(
            hidden_size=16, state_size=4, num_hidden_layers=2, num_heads=4, head_dim=8,
            n_groups=1, expand=2, chunk_size=4, vocab_size=10,
        )  # fmt: skip
        return transformers.Mamba2Model(cfg)
    if kind == "rwkv":
        cfg = transformers.RwkvConfig(
            hidden_size=16, num_hidden_layers=2, attention_hidden_size=16, intermediate_size=32,
            vocab_size=10, rescale_every=0, context_length=64,
        )  # fmt: skip
        return transformers.RwkvModel(cfg)
    cfg = transformers.LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=10, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.LlamaModel(cfg)


@pytest.mark.parametrize(
    ("kind", "arch"),
    [("mamba", "mamba"), ("mamba2", "mamba2"), ("rwkv", "rwkv4"), ("llama", "transformer")],
)
def test_transformers_checkpoints_load_and_match(tmp_path, kind, arch):
    model = _reference(kind).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    x = np.random.default_rng(0).normal(size=(2, 7, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(inputs_embeds=torch.from_numpy(x)).last_hidden_state.numpy()
    bb = load_backbone(tmp_path)
    assert bb.arch == arch
    y, _ = bb.forward(get_namespace("numpy").asarray(x))
    np.testing.assert_allclose(to_numpy(y), ref, rtol=2e-4, atol=2e-4)
    state, ys = bb.init_state(2), []
    for t in range(7):
        yt, state = bb.step(get_namespace("numpy").asarray(x[:, t]), state)
        ys.append(to_numpy(yt))
    np.testing.assert_allclose(np.stack(ys, axis=1), ref, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("arch", ["rwkv6", "s4d", "mamba"])
def test_our_layout_round_trips_and_is_detected_without_config(tmp_path, arch):
    mod = architecture(arch)
    cfg = mod.Config.from_dict({"hidden_size": 16, "n_embd": 64, "d_model": 16, "n_layer": 1,
                                "num_hidden_layers": 1, "head_size": 32, "d_state": 4})  # fmt: skip
    xp = get_namespace("numpy")
    bb = Backbone(arch, cfg, mod.init_params(cfg, Generator(0, xp), xp.float32))
    save_backbone(bb, tmp_path)
    back = load_backbone(tmp_path, backend="array_api_strict")
    assert back.config == bb.config
    d = {"rwkv6": 64, "s4d": 16, "mamba": 16}[arch]
    x = np.random.default_rng(1).normal(size=(1, 5, d)).astype(np.float32)
    a, _ = bb.forward(xp.asarray(x))
    b, _ = back.forward(back.xp.asarray(x))
    np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-6, atol=1e-6)
    if arch != "mamba":  # s4d and rwkv6 are recognised from their keys alone
        (tmp_path / "config.json").unlink()
        assert load_backbone(tmp_path).arch == arch


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightsError, match="no model.safetensors"):
        load_backbone(tmp_path)
    from kizzasi_lite.weights import save_file

    save_file({"foo.weight": np.zeros((2, 2), np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="architecture"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 4}))
    with pytest.raises(WeightsError, match="missing|unexpected|has no"):
        load_backbone(tmp_path)
