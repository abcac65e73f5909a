"""imaging: every accepted format and mode, EXIF orientation, the guards, and parity with torchvision."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_serving.errors import InputError, PayloadTooLarge, UnsupportedMediaType
from resnet_serving.inference import imaging
from resnet_serving.settings import Settings
from tests.fixtures import images as fx


def decode(data: bytes, **settings: int) -> torch.Tensor:
    return imaging.decode_image(data, Settings(**settings))


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("GIF", {})],
)
def test_every_supported_format_decodes_to_rgb_uint8(fmt: str, kwargs: dict) -> None:
    data = fx.encode(fx.rgb_image(96, 64), fmt, **kwargs)
    t = decode(data)
    assert t.dtype == torch.uint8
    assert tuple(t.shape) == (3, 64, 96)
    ref = fx.gradient(96, 64).astype(int)
    got = t.permute(1, 2, 0).numpy().astype(int)
    # lossless formats match exactly; JPEG within compression error; GIF is palettised (256 colours)
    mean_tolerance = {"PNG": 0, "WEBP": 0, "BMP": 0, "JPEG": 3, "GIF": 10}[fmt]
    assert np.abs(got - ref).mean() <= mean_tolerance


def test_gif_uses_first_frame() -> None:
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    blue = Image.new("RGB", (32, 32), (0, 0, 255))
    data = fx.encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    t = decode(data)
    assert t[:, 16, 16].tolist() == [255, 0, 0]


def test_grayscale_becomes_three_equal_channels() -> None:
    data = fx.encode(fx.rgb_image().convert("L"), "PNG")
    t = decode(data)
    assert t.shape[0] == 3
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_rgba_transparent_pixels_composite_over_white() -> None:
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red where opaque
    arr[:4, :, 3] = 0  # top half fully transparent
    arr[4:, :, 3] = 255
    t = decode(fx.encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert t[:, 0, 0].tolist() == [255, 255, 255]
    assert t[:, 7, 0].tolist() == [200, 0, 0]


def test_la_and_palette_with_transparency_are_deterministic() -> None:
    la = Image.new("LA", (8, 8), (10, 0))
    assert decode(fx.encode(la, "PNG"))[:, 0, 0].tolist() == [255, 255, 255]
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    data = fx.encode(p, "PNG", transparency=0)
    assert decode(data)[:, 0, 0].tolist() == [255, 255, 255]
    data_opaque = fx.encode(p, "PNG")
    assert decode(data_opaque)[:, 0, 0].tolist() == [0, 255, 0]


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    t = decode(fx.encode(cmyk, "JPEG", quality=100))
    r, g, b = t[:, 8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_is_scaled_not_clipped() -> None:
    arr = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    img = Image.fromarray(arr)  # uint16 → mode I;16
    t = decode(fx.encode(img, "PNG"))
    assert 126 <= t[0, 0, 0].item() <= 129  # PIL's own convert("L") would clip this to 255


def test_1bit_bmp() -> None:
    img = Image.new("1", (16, 16), 1)
    t = decode(fx.encode(img, "BMP"))
    assert t[:, 0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("orientation", "shape"), [(1, (64, 96)), (3, (64, 96)), (6, (96, 64)), (8, (96, 64))])
def test_exif_orientation_is_honoured(orientation: int, shape: tuple[int, int]) -> None:
    t = decode(fx.jpeg_with_orientation(orientation))
    assert tuple(t.shape[1:]) == shape
    plain = decode(fx.jpeg_with_orientation(1))
    expected = {
        1: plain,
        3: torch.rot90(plain, 2, dims=(1, 2)),
        6: torch.rot90(plain, -1, dims=(1, 2)),
        8: torch.rot90(plain, 1, dims=(1, 2)),
    }[orientation]
    assert (t.int() - expected.int()).abs().float().mean() < 3


def test_pixel_limit_checked_before_decode() -> None:
    # The header claims 100000×100000 pixels; decoding that would need 30 GB. It must be refused from the header.
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode(fx.png_huge_header(100_000, 100_000))
    with pytest.raises(PayloadTooLarge, match="limit is 1000"):
        decode(fx.png(96, 64), max_image_pixels=1000)


def test_byte_limit() -> None:
    data = fx.png()
    with pytest.raises(PayloadTooLarge, match="bytes"):
        decode(data, max_image_bytes=len(data) - 1)
    assert decode(data, max_image_bytes=len(data)).shape[0] == 3


@pytest.mark.parametrize("size", [(1, 40_000), (40_000, 1), (2, 100_000), (50, 4000)])
def test_any_aspect_ratio_within_the_limits_is_accepted(size: tuple[int, int]) -> None:
    """A 1×40000 image once needed a 232 × 9,280,000 resize; now only the kept region is resized."""
    w, h = size
    data = fx.png(w, h)
    assert tuple(imaging.decode_crop(data).shape) == (224, 224, 3)
    assert tuple(imaging.preprocess([decode(data)]).shape) == (1, 3, 224, 224)
    with pytest.raises(PayloadTooLarge, match="pixels"):  # the pixel cap still holds, whatever the shape
        decode(data, max_image_pixels=w * h - 1)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InputError),
        (b"hello world, I am not an image", InputError),
        (fx.jpeg()[:200], InputError),  # truncated
        (b"\xff\xd8\xff" + b"\x00" * 100, InputError),  # JPEG magic, garbage after
        (b"II*\x00" + b"\x00" * 100, UnsupportedMediaType),  # TIFF
        (b"%PDF-1.4\n" + b"x" * 100, UnsupportedMediaType),
        (b"<?xml version='1.0'?><svg></svg>", UnsupportedMediaType),
    ],
    ids=["empty", "text", "truncated-jpeg", "garbage-jpeg", "tiff", "pdf", "svg"],
)
def test_bad_bytes_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as exc:
        decode(data)
    assert type(exc.value) is error
    assert exc.value.message  # a message for the person who sent it


# ---- preprocessing parity with torchvision -----------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (480, 640), (300, 233), (1000, 120)])
def test_preprocess_matches_weights_transforms_exactly_on_tensors(size: tuple[int, int]) -> None:
    h, w = size
    img = torch.from_numpy(fx.gradient(w, h)).permute(2, 0, 1).contiguous()
    ref = imaging.WEIGHTS.transforms()(img)
    ours = imaging.preprocess([img])[0]
    assert ours.shape == ref.shape == (3, 224, 224)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_tensor_path_close_to_weights_transforms_on_pil_images() -> None:
    # transforms() on a PIL image resizes with PIL; the accelerator path resizes the uint8 tensor with torch.
    # Both are antialiased bilinear; they differ by rounding only. Bound it in normalised units (std≈0.225).
    data = fx.PHOTO.read_bytes()
    ref = imaging.WEIGHTS.transforms()(Image.open(fx.PHOTO).convert("RGB"))
    ours = imaging.preprocess([imaging.decode_image(data)])[0]
    diff = (ours - ref).abs()
    assert diff.mean().item() < 0.02
    assert diff.max().item() < 0.25


@pytest.mark.parametrize(
    "size", [(600, 512), (224, 224), (232, 232), (480, 640), (300, 233), (1000, 120), (70, 50), (231, 1601)]
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_pil_cpu_path_matches_weights_transforms_on_pil_images_exactly(size: tuple[int, int], fmt: str) -> None:
    """RESNET_SERVING_CPU_RESIZE=pil: decode_crop + normalize_crops == transforms()(the decoded PIL image), bit
    for bit, for portrait, landscape, square, up- and down-scaled images."""
    h, w = size
    rng = np.random.default_rng(h * 7919 + w)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise: every rounding difference would show
    data = fx.encode(Image.fromarray(noise), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    ref = imaging.WEIGHTS.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    crop = imaging.decode_crop(data, Settings(cpu_resize="pil"))
    assert crop.dtype == torch.uint8 and tuple(crop.shape) == (224, 224, 3)
    ours = imaging.normalize_crops([crop])[0]
    assert torch.equal(ours, ref)


@pytest.mark.parametrize(
    "size", [(600, 512), (224, 224), (232, 232), (480, 640), (300, 233), (1000, 120), (70, 50), (231, 1601)]
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_default_cpu_path_is_transforms_v2_and_within_one_grey_level_of_pil(size: tuple[int, int], fmt: str) -> None:
    """The default CPU path (libjpeg-turbo, torchvision.transforms.v2's uint8 resize) is bit-exact with
    transforms.v2 on the decoded uint8 tensor, and within one grey level of the PIL path in at most
    TORCH_RESIZE_TOLERANCE of the values. Noise shows every rounding difference."""
    from torchvision.transforms import v2

    h, w = size
    noise = np.random.default_rng(h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = fx.encode(Image.fromarray(noise), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    crop = imaging.decode_crop(data)
    assert crop.dtype == torch.uint8 and tuple(crop.shape) == (224, 224, 3)
    resize_crop = v2.Compose([v2.Resize(imaging.RESIZE_SIZE, antialias=True), v2.CenterCrop(imaging.CROP_SIZE)])
    assert torch.equal(crop, resize_crop(imaging.decode_image(data)).permute(1, 2, 0))
    diff = (crop.int() - imaging.decode_crop(data, Settings(cpu_resize="pil")).int()).abs()
    assert int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) <= imaging.TORCH_RESIZE_TOLERANCE


def test_default_cpu_path_agrees_with_pil_on_the_example_photo() -> None:
    photo = fx.PHOTO.read_bytes()
    diff = (imaging.decode_crop(photo).int() - imaging.decode_crop(photo, Settings(cpu_resize="pil")).int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) <= 0.005


THIN_SIZES = [(50, 4000), (4000, 50), (20, 3000), (100, 1700), (10, 2000), (3, 20_000), (233, 3729), (61, 1000)]


def within_thin_tolerance(ours: torch.Tensor, ref: torch.Tensor) -> None:
    mean_tol, max_tol = imaging.THIN_IMAGE_TOLERANCE
    diff = (ours - ref).abs()
    assert ours.shape == ref.shape == (3, 224, 224)
    assert diff.mean().item() <= mean_tol and diff.max().item() <= max_tol, (diff.mean().item(), diff.max().item())


@pytest.mark.parametrize("size", THIN_SIZES)
def test_cpu_path_crops_thin_images_first_within_tolerance_of_transforms(size: tuple[int, int]) -> None:
    """Above CROP_FIRST_ASPECT only the region the centre crop keeps is resized; noise shows every difference."""
    h, w = size
    assert max(h, w) > imaging.CROP_FIRST_ASPECT * min(h, w)
    noise = np.random.default_rng(h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = fx.encode(Image.fromarray(noise), "PNG")
    ref = imaging.WEIGHTS.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    within_thin_tolerance(imaging.normalize_crops([imaging.decode_crop(data)])[0], ref)


@pytest.mark.parametrize("size", THIN_SIZES)
def test_tensor_path_crops_thin_images_first_within_tolerance_of_transforms(size: tuple[int, int]) -> None:
    h, w = size
    noise = np.random.default_rng(h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = torch.from_numpy(noise).permute(2, 0, 1).contiguous()
    within_thin_tolerance(imaging.preprocess([img])[0], imaging.WEIGHTS.transforms()(img))


def test_crop_first_reads_only_the_kept_region() -> None:
    """The region handed to the resize is the centre crop's share of the image plus the filter's reach."""
    (x0, y0, x1, y1), box = imaging._kept_region(4000, 50)
    assert (y0, y1) == (0, 50)  # the short side is read whole
    assert x1 - x0 < 60 and abs((x0 + x1) / 2 - 2000) <= 2  # 224 of 18560 output columns: 48 source columns
    assert 0 <= box[0] < box[2] <= x1 - x0 and 0 <= box[1] < box[3] <= 50


def test_cpu_path_applies_exif_orientation_and_modes_like_decode_image() -> None:
    for data in (fx.jpeg_with_orientation(6), fx.png(50, 70), fx.encode(fx.rgb_image(96, 64).convert("L"), "PNG")):
        full = imaging.decode_image(data)
        ref = imaging.preprocess([full], channels_last=False)[0]
        ours = imaging.normalize_crops([imaging.decode_crop(data)])[0]
        assert ours.shape == ref.shape == (3, 224, 224)
        assert (ours - ref).abs().mean().item() < 0.02  # PIL vs torch resize rounding only; same orientation


def test_crop_pixels_is_the_crops_as_channels_last_float_and_rejects_empty() -> None:
    crops = [imaging.decode_crop(fx.jpeg()), imaging.decode_crop(fx.png(50, 70))]
    batch = imaging.crop_pixels(crops)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(crops).permute(0, 3, 1, 2).float())  # pixel values, not normalised
    assert imaging.crop_pixels(crops[:1], channels_last=False).is_contiguous()
    with pytest.raises(ValueError):
        imaging.crop_pixels([])


def test_resize_pixels_batch_is_channels_last_float_pixels() -> None:
    images = [decode(fx.jpeg()), decode(fx.png(50, 70))]
    batch = imaging.resize_pixels(images)
    assert batch.shape == (2, 3, 224, 224)
    assert batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= float(batch.min()) and float(batch.max()) <= 255 and float(batch.max()) > 1
    assert torch.equal(imaging.normalize(batch), imaging.preprocess(images))
    with pytest.raises(ValueError):
        imaging.resize_pixels([])


def test_categories_are_the_1000_imagenet_labels() -> None:
    cats = imaging.categories()
    assert len(cats) == 1000
    assert cats[0] == "tench" and cats[999] == "toilet tissue"


def test_an_undecodable_body_is_refused_without_naming_internal_objects() -> None:
    """PIL's own message names its in-memory file object (``<_io.BytesIO object at 0x…>``): never echoed."""
    with pytest.raises(InputError) as e:
        imaging.decode_crop(b"GIF89a")
    assert str(e.value) == "body looks like GIF but cannot be decoded: no GIF decoder accepts these bytes"


# ---- opt-in: JPEG decoded at a reduced scale by libjpeg (Settings.jpeg_scaled_decode)

SCALED = Settings(jpeg_scaled_decode=True)


def _photo(scale: int, mode: str = "RGB", orientation: int = 1) -> bytes:
    """The example photo (512×600), upscaled ``scale`` times: the texture of a real photo at camera sizes."""
    img = Image.open(fx.PHOTO).convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS).convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    return fx.encode(img, "JPEG", quality=90, exif=exif.tobytes())


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((512, 600), (256, 300)),  # 2.2× the resize: half scale
        ((2048, 2400), (256, 300)),  # 8.8×: an eighth
        ((1000, 3000), (250, 750)),  # 4.3× on the short side: a quarter
        ((300, 400), (300, 400)),  # under twice the resize: decoded whole
        ((463, 463), (463, 463)),  # one pixel short of half scale covering 232: decoded whole
    ],
)
def test_scaled_decode_takes_the_largest_reduction_that_still_covers_the_resize(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    opened = Image.open(io.BytesIO(fx.encode(Image.new("RGB", size, (90, 120, 30)), "JPEG")))
    assert imaging.scaled_jpeg_draft(opened) == decoded
    opened.load()
    assert opened.size == decoded
    new_w, new_h = imaging._resized_size(*size)
    assert decoded[0] >= new_w and decoded[1] >= new_h


@pytest.mark.parametrize(
    ("scale", "mode", "orientation"), [(1, "RGB", 1), (4, "RGB", 1), (4, "L", 1), (4, "CMYK", 1), (4, "RGB", 6)]
)
def test_scaled_decode_stays_close_to_the_exact_path_and_is_off_by_default(
    scale: int, mode: str, orientation: int
) -> None:
    """Not bit-exact (the reason it is opt-in and evaluate compares it), but within a few grey levels on a photo;
    orientation and modes are applied as on the exact path."""
    data = _photo(scale, mode, orientation)
    assert Settings().jpeg_scaled_decode is False
    exact = imaging.decode_crop(data).int()
    assert torch.equal(exact, imaging.decode_crop(data, Settings(jpeg_scaled_decode=False)).int())
    scaled = imaging.decode_crop(data, SCALED).int()
    assert scaled.shape == exact.shape == (224, 224, 3)
    diff = (scaled - exact).abs().float()
    assert 0 < diff.mean().item() <= 3.0, diff.mean().item()  # it did decode differently, and only slightly


def test_scaled_decode_leaves_small_jpegs_and_other_formats_bit_exact() -> None:
    for data in (fx.jpeg(400, 300), fx.png(1200, 1000), fx.encode(fx.rgb_image(1200, 1000), "WEBP", quality=90)):
        assert torch.equal(imaging.decode_crop(data, SCALED), imaging.decode_crop(data))


def test_scaled_decode_refuses_bad_jpegs_as_the_exact_path_does() -> None:
    truncated = _photo(2)[:5000]
    with pytest.raises(InputError, match="JPEG"):
        imaging.decode_crop(truncated, SCALED)
    with pytest.raises(PayloadTooLarge, match="pixels"):
        imaging.decode_crop(_photo(2), Settings(jpeg_scaled_decode=True, max_image_pixels=1000))
