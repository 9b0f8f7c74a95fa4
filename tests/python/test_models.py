"""The ONNX conversion of the real EfficientNet-Lite weights is faithful and gives ImageNet sense."""

import numpy as np
import onnxruntime as ort
import pytest

from conftest import MODELS, center_crop_pixels, load_manifest, skimage_photo
from wit_models import reference

from wit_models.lite import blocks_from_state
from wit_models.pth import CheckpointError, load_state_dict

# skimage photo -> ImageNet classes any sane model puts in its top-5.
EXPECTED = {
    "chelsea.png": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee.png": {967, 968, 504},  # espresso, cup, coffee mug
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle_left.png": {665, 670},  # moped, motor scooter
}


def session(name):
    return ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite2"])
def test_top5_on_real_photos(name, imagenet_names):
    man = load_manifest(name)
    sess = session(name)
    for photo, expected in EXPECTED.items():
        x = center_crop_pixels(skimage_photo(photo), man)[None]
        emb, logits, fmap = sess.run(["embedding", "logits", "feature_map"], {"pixels": x})
        assert emb.shape == (1, man["embedding_dim"])
        top5 = set(np.argsort(-logits[0])[:5].tolist())
        names = [imagenet_names[i] for i in sorted(top5)]
        assert top5 & expected, f"{name} on {photo}: top-5 {names} has none of {expected}"
        # embedding is the spatial mean of the feature map
        np.testing.assert_allclose(emb[0], fmap[0].mean(axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("name,size", [("efficientnet-lite0", 224), ("efficientnet-lite0", 64), ("efficientnet-lite2", 67)])
def test_onnx_matches_numpy_reference(name, size):
    """Folded-BN ONNX graph vs unfolded float64 numpy forward: max abs diff <= 1e-4 (odd sizes test SAME padding)."""
    man = load_manifest(name)
    x = center_crop_pixels(skimage_photo("chelsea.png"), man, size)[None]
    state = load_state_dict(_weights(name))
    emb_ref, logits_ref, fmap_ref = reference.forward(state, x, man["input"]["mean"], man["input"]["std"])
    emb, logits, fmap = session(name).run(["embedding", "logits", "feature_map"], {"pixels": x})
    assert fmap.shape == fmap_ref.shape
    assert np.abs(emb - emb_ref).max() <= 1e-4
    assert np.abs(fmap - fmap_ref).max() <= 1e-3  # per-position values are larger than their mean
    assert np.abs(logits - logits_ref).max() <= 1e-3


def test_seed_feature_map_at_64px():
    """The seed's 64x64 input gives a 2x2x1280 final feature map (5120-d flattened)."""
    x = center_crop_pixels(skimage_photo("coffee.png"), load_manifest("efficientnet-lite0"), 64)[None]
    (fmap,) = session("efficientnet-lite0").run(["feature_map"], {"pixels": x})
    assert fmap.shape == (1, 1280, 2, 2)


def test_block_structure_matches_efficientnet_lite():
    s0 = load_state_dict(_weights("efficientnet-lite0"))
    s2 = load_state_dict(_weights("efficientnet-lite2"))
    b0, b2 = blocks_from_state(s0), blocks_from_state(s2)
    assert len(b0) == 16 and len(b2) == 21  # depth 1.0 vs 1.2 with fixed first/last stages
    assert [b.stride for b in b0].count(2) == 4
    assert not any(k for k in s0 if "_se_" in k)


def test_manifest_sha256_matches_file():
    from wit_models.manifest import sha256_file

    for name in ["efficientnet-lite0", "efficientnet-lite2"]:
        assert load_manifest(name)["sha256"] == sha256_file(MODELS / f"{name}.onnx")


def test_bad_checkpoints_are_named(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x80\x04K\x05.")  # a pickle of 5, not the magic number
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_state_dict(bad)
    z = tmp_path / "new.pth"
    import zipfile

    with zipfile.ZipFile(z, "w") as f:
        f.writestr("archive/data.pkl", b"")
    with pytest.raises(CheckpointError, match="export_timm"):
        load_state_dict(z)


def _weights(name):
    from convert_lite import packaged_weights as pw

    return pw(name)
