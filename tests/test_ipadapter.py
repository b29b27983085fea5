"""Reference-image content (IP-Adapter) through diffusers' loader, our sampling loop:
equal to diffusers' StableDiffusionPipeline with the same loaded adapter."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from videdit.core.attention import FrameContext
from videdit.core.conditioning import vae_decode
from videdit.core.restyle import denoise_window, prepare
from videdit.core.sampling import frame_noise
from videdit.errors import InputError

from videdit.testing import save_ip_adapter, save_sd15_dir, write_recipe


@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("ip")
    d = save_sd15_dir(root, controlnet=False)
    adapter = save_ip_adapter(root, UNet2DConditionModel.load_config(os.path.join(d["base"], "unet")))
    extra = (f'\n[ip_adapter]\nmodel = "{adapter}"\nsubfolder = "models"\n'
             'weight_name = "ip-adapter_tiny.safetensors"\nscale = 0.8\n')
    recipe = write_recipe(root / "ip.toml", d["base"], defaults={"steps": 3, "strength": 1.0, "max_side": 64},
                          extra=extra)
    ref = root / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(ref)
    from videdit.api import load_pipeline

    return {"pipe": load_pipeline(recipe, device="cpu"), "ref": str(ref), "root": root}


def test_ip_adapter_equals_diffusers_pipeline(ip):
    from diffusers import StableDiffusionPipeline

    pipe = ip["pipe"]
    c = pipe.components
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    opts = pipe.options("a cat", ref_image=ip["ref"], consistency="none", seed=4)
    prep = prepare(c, opts)
    ours = (vae_decode(c.vae, denoise_window(c, prep, frames, [0, 1], FrameContext())) / 2 + 0.5).clamp(0, 1)
    ours = ours.permute(0, 2, 3, 1).numpy()
    ref = StableDiffusionPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                                  scheduler=type(c.scheduler).from_config(c.scheduler.config), safety_checker=None,
                                  feature_extractor=c.feature_extractor, image_encoder=c.image_encoder,
                                  requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    image = Image.open(ip["ref"]).convert("RGB")
    for i in range(2):
        out = ref("a cat", ip_adapter_image=image, height=64, width=64, num_inference_steps=3, guidance_scale=7.5,
                  latents=frame_noise(4, [i], (4, 32, 32)), output_type="np").images[0]
        assert np.abs(out - ours[i]).max() <= 1e-4


def test_reference_image_changes_the_output(ip, tmp_path):
    pipe = ip["pipe"]
    frames = np.random.default_rng(2).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    from videdit.io import Video

    other = tmp_path / "other.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(other)
    a = pipe.restyle(Video(frames, 8.0), "a cat", ref_image=ip["ref"], consistency="none")
    b = pipe.restyle(Video(frames, 8.0), "a cat", ref_image=str(other), consistency="none")
    c = pipe.restyle(Video(frames, 8.0), "", ref_image=ip["ref"], consistency="none")  # image alone is enough
    assert np.abs(a.frames.astype(int) - b.frames).mean() > 0.5
    assert c.frames.shape == a.frames.shape


def test_unreadable_reference_image(ip, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    from videdit.io import Video

    frames = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="not a readable image"):
        ip["pipe"].restyle(Video(frames, 8.0), "x", ref_image=str(bad))
    with pytest.raises(InputError, match="not found"):
        ip["pipe"].restyle(Video(frames, 8.0), "x", ref_image=str(tmp_path / "missing.png"))


def test_a_reference_image_inside_a_png_output_is_never_replaced(ip, tmp_path):
    """The reference image is an input like the clip: a PNG-sequence output that would replace the
    directory holding it is refused, and the image survives."""
    from videdit.errors import OutputError
    from videdit.io import Video

    out = tmp_path / "frames"
    out.mkdir()
    ref = out / "000001.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(ref)
    (out / ".videdit-frames").touch()  # even where it looks like an earlier run's frame
    before = ref.read_bytes()
    frames = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(OutputError, match="frames: holds the input .*000001.png"):
        ip["pipe"].restyle(Video(frames, 8.0), "x", ref_image=str(ref), output=str(out) + "/")
    assert ref.read_bytes() == before

