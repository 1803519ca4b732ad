"""Image encoders: state-dict layout of all six released configurations (key_shapes.json, made by the
original code with timm), the encoder interface, the original's CLIP encoders, hyper-parameter round
trips and backbone-weight loading (local files, faked downloads, offline errors)."""

from __future__ import annotations

import hashlib
import inspect
import json

import pytest
import torch
import torch.nn.functional as F

import satclip
from satclip import image
from satclip.errors import BadInputError
from satclip.image import weights as backbone_weights
from satclip.image.hparams import config_from_hparams, hparams_from_config
from satclip.models.clip import SatCLIP

from .conftest import REFERENCE, S2_EXAMPLES, one_error_line, require

ARCH_FEATURES = {"moco_resnet18": 512, "moco_resnet50": 2048, "moco_vit16": 384}


@pytest.fixture(scope="module")
def key_shapes():
    return json.loads(require(REFERENCE / "key_shapes.json").read_text())["configs"]


@pytest.fixture(scope="module")
def encoders():
    """One randomly initialised encoder per released backbone (building them is the slow part)."""
    torch.manual_seed(0)
    return {name: image.create(name, embed_dim=256) for name in ARCH_FEATURES}


def _model_for(config: dict, encoders: dict) -> SatCLIP:
    hparams = config["hyper_parameters"]
    from satclip.io.original import location_config_from_hparams

    visual = encoders[config_from_hparams(hparams)["name"]]
    return SatCLIP(visual, satclip.LocationEncoder.from_config(location_config_from_hparams(hparams)))


@pytest.mark.parametrize(
    "name",
    [f"satclip-{arch}-l{L}" for arch in ("resnet18", "resnet50", "vit16") for L in (10, 40)],
)
def test_released_layout_matches_original(name, key_shapes, encoders):
    config = key_shapes[name]
    model = _model_for(config, encoders)
    expected = {}
    for key, spec in config["state_dict"].items():
        if key.startswith("model.nnet."):
            continue  # the original's duplicate of model.location.nnet.*
        expected[key[len("model.") :]] = spec
    ours = model.state_dict()
    assert set(ours) == set(expected)
    for key, spec in expected.items():
        assert list(ours[key].shape) == spec["shape"], key
        if not key.startswith("location."):  # the original's location network is float64; ours picks dtype
            assert str(ours[key].dtype).removeprefix("torch.") == spec["dtype"], key
    assert sum(p.numel() for p in model.parameters()) == config["n_parameters"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == config["n_trainable_parameters"]
    assert model.visual.config["name"] == config["hyper_parameters"]["vision_layers"]


@pytest.mark.parametrize("arch", list(ARCH_FEATURES))
def test_encode_image_shapes(arch, key_shapes, encoders):
    expected = key_shapes[f"satclip-{arch.removeprefix('moco_')}-l10"]["encode_image_zeros_1x13xRxR"]
    encoder = encoders[arch].eval()
    for res, shape in expected.items():
        x = torch.zeros(1, 13, int(res), int(res))
        if isinstance(shape, str):  # the original raised (ViT-S/16 takes 224² only)
            with pytest.raises(ValueError, match=rf"224×224 images only, got {res}×{res}"):
                encoder(x)
        else:
            with torch.no_grad():
                assert list(encoder(x).shape) == shape


@pytest.mark.parametrize("arch", list(ARCH_FEATURES))
def test_encoder_interface_and_frozen_backbone(arch, encoders):
    encoder = encoders[arch].eval()
    assert encoder.frozen_backbone and encoder.feature_dim == ARCH_FEATURES[arch] and encoder.embed_dim == 256
    head_params = {id(p) for p in encoder.head.parameters()}
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    assert trainable == head_params
    x = torch.randn(2, 13, 224, 224)
    with torch.no_grad():
        features = encoder.encode_features(x)
        assert features.shape == (2, ARCH_FEATURES[arch])
        torch.testing.assert_close(encoder(x), encoder.head(features))
    # satclip's bad-input error (exit 2, one line), as the size and pixel checks give (they were plain ValueErrors)
    with pytest.raises(BadInputError, match="13-band images, got 12 bands"):
        encoder(torch.zeros(1, 12, 224, 224))
    with pytest.raises(BadInputError, match=r"images of shape \(13, 224, 224\) are one image; .*images\[None\]"):
        encoder(torch.zeros(13, 224, 224))
    with pytest.raises(BadInputError, match=r"images must have shape \(B, C, H, W\), got \(224, 224\)"):
        encoder(torch.zeros(224, 224))


def test_unfrozen_backbone_trains():
    encoder = image.create("moco_resnet18", embed_dim=8, frozen=False)
    assert not encoder.frozen_backbone
    assert all(p.requires_grad for p in encoder.parameters())
    assert encoder.config == {"name": "moco_resnet18", "embed_dim": 8, "in_chans": 13, "frozen": False}


def test_registry_errors():
    known = "clip_resnet, clip_vit, moco_resnet18, moco_resnet50, moco_vit16, mosaiks"
    with pytest.raises(KeyError, match=f"known: {known}"):
        image.create("resnet9000")
    with pytest.raises(TypeError, match="unexpected parameter"):
        image.create("moco_resnet18", depth=3)


# --- the original's from-scratch CLIP encoders -------------------------------------------------------

CLIP_RESNET_HPARAMS = {"vision_layers": (1, 2, 1, 1), "vision_width": 64, "image_resolution": 64,
                       "in_channels": 4, "embed_dim": 32, "vision_patch_size": 32}  # fmt: skip
CLIP_VIT_HPARAMS = {"vision_layers": 2, "vision_width": 128, "vision_patch_size": 16, "image_resolution": 64,
                    "in_channels": 4, "embed_dim": 32}  # fmt: skip


def test_clip_resnet_layout_and_head():
    encoder = image.from_config(config_from_hparams(CLIP_RESNET_HPARAMS)).eval()
    state = encoder.state_dict()
    # keys and shapes as the original ModifiedResNet names them (3-conv stem, anti-aliased blocks whose
    # shortcut is Sequential("-1": pool, "0": conv, "1": norm), attention pool)
    expected = {
        "conv1.weight": (32, 4, 3, 3), "bn2.running_var": (32,), "conv3.weight": (64, 32, 3, 3),
        "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.0.downsample.1.weight": (256,),
        "layer2.1.conv2.weight": (128, 128, 3, 3), "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "attnpool.positional_embedding": (5, 2048), "attnpool.q_proj.weight": (2048, 2048),
        "attnpool.c_proj.weight": (32, 2048), "attnpool.c_proj.bias": (32,),
    }  # fmt: skip
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "layer2.1.downsample.0.weight" not in state
    assert encoder.head is encoder.attnpool.c_proj and encoder.feature_dim == 2048
    assert all(not m.bn3.weight.detach().any() for m in encoder.layer1)  # zero-init residual branches

    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        # reference: torch's functional multi-head attention, called as the original attention pool does
        trunk = encoder.avgpool(F.relu(encoder.bn3(encoder.conv3(F.relu(encoder.bn2(encoder.conv2(
            F.relu(encoder.bn1(encoder.conv1(x))))))))))  # fmt: skip
        trunk = encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(trunk))))
        pool = encoder.attnpool
        tokens = trunk.flatten(start_dim=2).permute(2, 0, 1)
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + pool.positional_embedding[:, None, :]
        reference, _ = F.multi_head_attention_forward(
            query=tokens[:1], key=tokens, value=tokens, embed_dim_to_check=tokens.shape[-1],
            num_heads=pool.num_heads, q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]), bias_k=None,
            bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False,
        )  # fmt: skip
        torch.testing.assert_close(encoder(x), reference.squeeze(0), rtol=1e-4, atol=1e-5)
    assert pool.num_heads == 64 * 32 // 64
    with pytest.raises(ValueError, match="64×64 images only"):
        encoder(torch.zeros(1, 4, 96, 96))


def test_clip_vit_layout_and_head():
    encoder = image.from_config(config_from_hparams(CLIP_VIT_HPARAMS)).eval()
    state = encoder.state_dict()
    expected = {
        "conv1.weight": (128, 4, 16, 16), "class_embedding": (128,), "positional_embedding": (17, 128),
        "ln_pre.weight": (128,), "transformer.resblocks.1.attn.in_proj_weight": (384, 128),
        "transformer.resblocks.1.attn.out_proj.weight": (128, 128),
        "transformer.resblocks.0.ln_1.bias": (128,), "transformer.resblocks.0.mlp.c_fc.weight": (512, 128),
        "transformer.resblocks.0.mlp.c_proj.bias": (128,),
        "ln_post.weight": (128,), "proj": (128, 32),
    }  # fmt: skip
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "conv1.bias" not in state and "transformer.resblocks.2.ln_1.weight" not in state
    assert encoder.transformer.resblocks[0].attn.num_heads == 128 // 64
    x = torch.randn(3, 4, 64, 64)
    with torch.no_grad():
        features = encoder.encode_features(x)
        torch.testing.assert_close(encoder(x), features @ encoder.proj)
    head = encoder.head
    assert (head.in_features, head.out_features) == (128, 32) and next(head.parameters()) is encoder.proj


@pytest.mark.parametrize("hparams", [CLIP_RESNET_HPARAMS, CLIP_VIT_HPARAMS])
def test_clip_hparams_round_trip(hparams):
    back = hparams_from_config(config_from_hparams(hparams))
    keys = ["vision_layers", "vision_width", "image_resolution", "in_channels", "embed_dim"]
    if isinstance(hparams["vision_layers"], int):
        keys.append("vision_patch_size")
    assert {k: back[k] for k in keys} == {k: hparams[k] for k in keys}


def test_moco_hparams_round_trip(key_shapes):
    hparams = key_shapes["satclip-vit16-l40"]["hyper_parameters"]
    config = config_from_hparams(hparams)
    assert config == {"name": "moco_vit16", "embed_dim": 256, "in_chans": 13, "frozen": True}
    assert hparams_from_config(config) == {"vision_layers": "moco_vit16", "in_channels": 13, "embed_dim": 256}
    # the early native layout (a dict of the original vision hyper-parameters) is still understood
    legacy = {
        k: hparams[k]
        for k in ("vision_layers", "vision_width", "image_resolution", "in_channels", "embed_dim")
    }
    assert image.from_config(legacy, frozen=True).config == config
    with pytest.raises(ValueError, match="cannot be written as an original"):
        hparams_from_config({"name": "mosaiks", "in_chans": 3, "embed_dim": 8})
    with pytest.raises(ValueError, match="unknown vision_layers 'moco_resnet9000'"):
        config_from_hparams({**hparams, "vision_layers": "moco_resnet9000"})


# --- pretrained backbone weights ---------------------------------------------------------------------


def _backbone_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = image.create(arch, embed_dim=1000).state_dict()
    return {k: v for k, v in state.items() if not k.startswith("fc.")}  # torchgeo's files hold no head


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_backbone_weights_from_local_file(tmp_path, suffix):
    state = _backbone_state("moco_resnet18", seed=1)
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, path)
    torch.manual_seed(2)
    encoder = image.create("moco_resnet18", embed_dim=256, weights=str(path))
    loaded = encoder.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (256, 512) and encoder.fc.weight.requires_grad
    assert not encoder.conv1.weight.requires_grad


def test_backbone_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(_backbone_state("moco_resnet50", seed=0), path)
    with pytest.raises(backbone_weights.BackboneWeightsError, match="do not fit resnet18: .*unexpected"):
        image.create("moco_resnet18", weights=path)
    with pytest.raises(BadInputError, match="neither a file .* nor a known name"):
        image.create("moco_resnet18", weights="imagenet")  # (bad input, exit 2: not a failure to fetch)


def _fake_weights(monkeypatch, tmp_path, state) -> tuple[backbone_weights.BackboneWeights, bytes]:
    """A BackboneWeights entry for resnet18 whose file name carries the sha256 of ``state`` saved."""
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    data = raw.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:8]
    fake = backbone_weights.BackboneWeights(
        arch="resnet18", name="test_moco", repo_id="torchgeo/test", filename=f"resnet18_test-{digest}.pth",
        revision="0" * 40, torchgeo_enum="ResNet18_Weights.TEST",
    )  # fmt: skip
    monkeypatch.setitem(backbone_weights.BACKBONE_WEIGHTS, ("resnet18", "test_moco"), fake)
    return fake, data


def test_named_weights_from_faked_hub_and_cache(monkeypatch, tmp_path):
    state = _backbone_state("moco_resnet18", seed=3)
    fake, data = _fake_weights(monkeypatch, tmp_path, state)
    downloaded = tmp_path / "hub" / fake.filename
    downloaded.parent.mkdir()
    downloaded.write_bytes(data)
    calls = []
    monkeypatch.setattr(backbone_weights, "_hf_download", lambda w: calls.append(w) or downloaded)
    encoder = image.create("moco_resnet18", weights="test_moco")
    assert calls == [fake] and torch.equal(encoder.conv1.weight, state["conv1.weight"])

    downloaded.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # corrupt download
    with pytest.raises(backbone_weights.BackboneWeightsError, match="sha256"):
        image.create("moco_resnet18", weights="test_moco")

    # a file placed in the cache is used without any download
    fake.cache_path().parent.mkdir(parents=True, exist_ok=True)
    fake.cache_path().write_bytes(data)
    monkeypatch.setattr(backbone_weights, "_hf_download", lambda w: pytest.fail("must not download"))
    encoder = image.create("moco_resnet18", weights="test_moco")
    assert torch.equal(encoder.layer4[1].bn2.running_mean, state["layer4.1.bn2.running_mean"])


def test_vit_blocks_match_torch_transformer_layer(encoders):
    """Independent reference for the timm-layout ViT: each block equals torch's pre-norm
    ``TransformerEncoderLayer`` (GELU, LayerNorm eps 1e-6) holding the same weights."""
    encoder = encoders["moco_vit16"].eval()
    block = encoder.blocks[3]
    layer = torch.nn.TransformerEncoderLayer(
        384, 6, dim_feedforward=1536, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
        batch_first=True, norm_first=True,
    ).eval()  # fmt: skip
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.load_state_dict(block.attn.proj.state_dict())
        layer.linear1.load_state_dict(block.mlp.fc1.state_dict())
        layer.linear2.load_state_dict(block.mlp.fc2.state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
        tokens = torch.randn(2, 197, 384)
        torch.testing.assert_close(block(tokens), layer(tokens), rtol=1e-5, atol=1e-5)
        # the whole encoder: patch embedding, class token, positions, blocks, final norm, class-token head
        x = torch.randn(1, 13, 224, 224)
        t = encoder.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([encoder.cls_token, t], dim=1) + encoder.pos_embed
        for blk in encoder.blocks:
            t = blk(t)
        expected = encoder.head(
            torch.nn.functional.layer_norm(t, (384,), encoder.norm.weight, encoder.norm.bias, 1e-6)[:, 0]
        )
        torch.testing.assert_close(encoder(x), expected)


# --- sizes are checked before anything is built ------------------------------------------------------


def _whole_number_parameters() -> list[tuple[str, str, object]]:
    """(encoder, parameter, default) of every parameter whose default is a whole number (or, ``layers`` of
    clip_resnet, a tuple of them): the sizes of every registered encoder."""
    found = []
    for name in image.names():
        for key, parameter in inspect.signature(image.IMAGE_ENCODERS.get(name)).parameters.items():
            default = parameter.default
            entries = default if isinstance(default, tuple) else (default,)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in entries):
                found.append((name, key, default))
    return found


SIZES = _whole_number_parameters()


def test_every_whole_number_parameter_is_a_checked_size():
    """A new encoder's size that satclip.image.create does not check would give torch's errors again."""
    assert len(SIZES) >= 20
    assert {key for _, key, _ in SIZES} <= set(image.SIZE_LIMITS)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "8", 10**9], ids=repr)
@pytest.mark.parametrize(("name", "key", "default"), SIZES, ids=[f"{n}.{k}" for n, k, _ in SIZES])
def test_sizes_that_are_not_whole_numbers_from_1_are_refused(name, key, default, bad):
    """embed_dim=0 built an empty head (and mosaiks an empty model), in_chans=-5 or 2.5 failed deep in torch
    ("negative dimension", "in_channels must be divisible by groups"), kernel_size=10**9 overflowed a storage
    size and embed_dim=10**9 tried to allocate terabytes: one line now names the parameter and what it takes."""
    value = (bad, *default[1:]) if isinstance(default, tuple) else bad  # (clip_resnet: blocks per stage)
    with pytest.raises(BadInputError) as refused:
        image.create(name, **{key: value})
    limit = image.SIZE_LIMITS[key]
    what = f"hold whole numbers from 1 to {limit}, not {bad!r}" if isinstance(default, tuple) else (
        f"be a whole number from 1 to {limit}")  # fmt: skip
    assert str(refused.value) == f"image encoder {name!r}: {key}={value!r} must {what}"


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


@pytest.mark.parametrize("name", image.names())
def test_a_model_over_the_memory_limit_is_refused(name, monkeypatch):
    """Sizes within their limits can still make a model of many GB: create weighs it on the meta device first,
    exactly (a model of the limit's size is built, one byte over it is refused)."""
    size = _bytes(image.create(name))
    monkeypatch.setattr(image, "MAX_MODEL_BYTES", size)
    assert _bytes(image.create(name)) == size
    monkeypatch.setattr(image, "MAX_MODEL_BYTES", size - 1)
    with pytest.raises(BadInputError, match=rf"^image encoder '{name}' with its defaults would take "
                                            rf"{size / 2**30:,.1f} GiB for its weights, over the "):  # fmt: skip
        image.create(name)


def test_a_huge_head_is_refused_naming_its_size():
    """embed_dim=2**20 on moco_resnet50 (2048 features) is a head of 8 GiB."""
    small, larger = (_bytes(image.create("moco_resnet50", embed_dim=e)) for e in (1, 2))
    expected = small + (2**20 - 1) * (larger - small)  # (the head grows by one row per embedding dimension)
    with pytest.raises(BadInputError) as refused:
        image.create("moco_resnet50", embed_dim=2**20)
    assert str(refused.value) == (
        f"image encoder 'moco_resnet50' with embed_dim=1048576 would take {expected / 2**30:,.1f} GiB for its "
        f"weights, over the {image.MAX_MODEL_BYTES / 2**30:g} GiB an image encoder may: give smaller sizes"
    )


@pytest.mark.parametrize(
    ("encoder", "setting", "expected"),
    [
        ("moco_resnet18", "in_chans=0", "in_chans=0 must be a whole number from 1 to"),
        ("mosaiks", "kernel_size=1000000000", "kernel_size=1000000000 must be a whole number from 1 to"),
        ("mosaiks", "num_filters=2.5", "num_filters=2.5 must be a whole number from 1 to"),
    ],
)
def test_satclip_train_refuses_a_bad_image_encoder_size(tmp_path, capsys, encoder, setting, expected):
    """`satclip train` with model.image_encoder sizes like these ended in "unexpected error (RuntimeError):
    Storage size calculation overflowed …" (exit 1), or trained until the first batch met a 0-band encoder."""
    from satclip.cli import main

    args = ["train", "--data.root", str(require(S2_EXAMPLES)), "--data.source", "images", "--data.batch_size", "4",
            "--model.image_encoder.name", encoder, "--set", f"model.image_encoder.{setting}", "--model.embed_dim",
            "8", "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar",
            "false", "--trainer.output_dir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"satclip: error: bad config: image encoder '{encoder}': {expected} "), line
    assert not (tmp_path / "run").exists()
    # the config check says so too (--print-config accepted what the run refused)
    assert main([*args, "--print-config"]) == 2
    assert one_error_line(capsys.readouterr().err) == line


@pytest.mark.parametrize(("name", "layers", "message"), [
    ("clip_resnet", 5, r"layers=5 must give the blocks of its 4 stages, e\.g\. \(3, 4, 6, 3\)"),
    ("clip_resnet", (1, 2, 3), r"layers must give the blocks of 4 stages, e\.g\. \(3, 4, 6, 3\), got \(1, 2, 3\)"),
    ("clip_vit", (1, 2), r"layers=\(1, 2\) must be a whole number from 1 to 1024"),
])  # fmt: skip
def test_layers_of_the_wrong_shape_are_named(name, layers, message):
    """clip_resnet takes blocks per stage, clip_vit a depth: the other shape was "'int' object is not iterable"
    or int()'s complaint about a tuple."""
    with pytest.raises(ValueError, match=message):
        image.create(name, layers=layers)
