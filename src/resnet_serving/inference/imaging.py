"""Decode, validate and preprocess images: bytes → uint8 crop → float NCHW batch of pixels for the model.

The one place that knows about image formats. Used by the TorchServe handler, the bench and the tests.

* Formats: JPEG, PNG, WebP, GIF (first frame) and BMP. Other recognisable formats (TIFF, PDF, SVG, HEIC…)
  get 415; bytes that are not an image get 400.
* Modes: grayscale, RGBA/LA/P (alpha composited over white, deterministically), CMYK, 16-bit, 1-bit, and
  the EXIF orientation applied.
* Guards, both configurable (:class:`~resnet_serving.settings.Settings`): a byte cap and a pixel cap checked
  from the header *before* the pixel data is decoded (decompression bombs). Any aspect ratio is accepted:
  resizing the short side of a 1×40000 image to 232 would allocate gigabytes, so an image longer than
  :data:`CROP_FIRST_ASPECT` times its short side is first cropped to the region the centre crop keeps (plus
  the resampling filter's reach), and only that region is resized (:func:`center_crop_pil`, :func:`resize_pixels`).
* Opt-in (:attr:`~resnet_serving.settings.Settings.jpeg_scaled_decode`): a large JPEG is decoded at a reduced
  scale by libjpeg itself (:func:`scaled_jpeg_draft`) before the same resize and crop; faster, not bit-exact.
* Preprocessing is the weights' ``ResNet50_Weights.IMAGENET1K_V2.transforms()`` (resize 232 bilinear
  antialiased, centre crop 224, scale to [0, 1], ImageNet mean/std); the constants are read from torchvision
  itself. The resize and crop happen here; the scaling and mean/std are folded into the model's first
  convolution (``model.Classifier``), so a batch leaves here as float pixel values (:func:`crop_pixels`,
  :func:`resize_pixels`) and :func:`normalize` is only the reference. Three paths:

  - **CPU, default** (:func:`decode_crop` with ``cpu_resize="torch"``, then :func:`crop_pixels`): libjpeg-turbo
    decodes into a tensor and ``torchvision.transforms.v2`` resizes it with torch's uint8 antialiased kernel.
    Within one grey level of ``transforms()`` on the PIL image, in a few values per thousand
    (:data:`TORCH_RESIZE_TOLERANCE` bounds it), at about half the CPU of PIL's decode and resize.
  - **CPU, exact** (``RESNET_SERVING_CPU_RESIZE=pil``): PIL decodes and resizes, bit-exact with
    ``transforms()(PIL image)``, the input type the weights were evaluated with.
  - Above :data:`CROP_FIRST_ASPECT` either CPU path takes PIL's crop-first resize, with the same filter taps at
    float32 box coordinates: within :data:`THIN_IMAGE_TOLERANCE` of ``transforms()`` rather than bit-exact.
  - **Accelerator** (:func:`decode_image` or :func:`decode_jpeg_batch`, then :func:`resize_pixels` on the device):
    ``transforms()(uint8 tensor)``. It differs from the PIL path by resize rounding only.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.models import ResNet50_Weights
from torchvision.transforms import functional as F
from torchvision.transforms.v2 import functional as F2

from resnet_serving.errors import InputError, PayloadTooLarge, UnsupportedMediaType
from resnet_serving.inference.formats import SUPPORTED_FORMATS, sniff_format
from resnet_serving.settings import Settings, env_name

#: The weights whose transforms define preprocessing (and whose categories are the labels).
WEIGHTS = ResNet50_Weights.IMAGENET1K_V2
_REF = WEIGHTS.transforms()
RESIZE_SIZE: list[int] = list(_REF.resize_size)
CROP_SIZE: list[int] = list(_REF.crop_size)
MEAN: list[float] = list(_REF.mean)
STD: list[float] = list(_REF.std)
INTERPOLATION = _REF.interpolation
ANTIALIAS: bool = bool(_REF.antialias)

#: Longest side ÷ shortest side above which only the region the centre crop keeps is resized. At or below it
#: the whole image is resized (bit-exact with ``transforms()``): at most 16 × 232 × 232 resized pixels.
CROP_FIRST_ASPECT = 16
#: How far the default CPU path (``cpu_resize="torch"``) may differ from ``transforms()`` on the PIL image: at
#: most one grey level, in at most this share of the crop's values (tests/unit/test_imaging.py, noise images).
TORCH_RESIZE_TOLERANCE = 0.02
#: How far a crop-first result may differ from ``transforms()``, in normalised units (mean, max over pixels):
#: two grey levels at most (one level is about 0.0175); tests/unit/test_imaging.py holds both paths to it.
THIN_IMAGE_TOLERANCE = (0.01, 0.04)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, deterministically."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale to 8 bits. PIL's own convert("L") clips instead.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr8 = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    # L, 1, P (no transparency), CMYK, YCbCr, LAB, HSV, RGBX…
    return img.convert("RGB")


@contextmanager
def _pil_errors(fmt: str) -> Iterator[None]:
    """Map what PIL raises on hostile or corrupt bytes to typed 4xx errors, in one place."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (PayloadTooLarge, InputError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PayloadTooLarge(f"image has too many pixels: {e}") from e
    except UnidentifiedImageError as e:  # PIL's message names its in-memory file object, nothing the caller sent
        raise InputError(f"body looks like {fmt} but cannot be decoded: no {fmt} decoder accepts these bytes") from e
    except MemoryError as e:
        raise PayloadTooLarge("image too large to decode in memory") from e
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, struct.error… on corrupt data
        raise InputError(f"corrupt or truncated {fmt} image: {e}") from e


def _open_checked(data: bytes, settings: Settings) -> tuple[str, Image.Image]:
    """Byte cap, format, then PIL's header only: the pixel cap is checked before anything is decoded.
    Call inside :func:`_pil_errors`."""
    fmt = _check_bytes(data, settings)
    opened = Image.open(io.BytesIO(data), formats=[fmt])
    _check_dimensions(*opened.size, settings)
    return fmt, opened


def decode_image(data: bytes | bytearray | memoryview, settings: Settings | None = None) -> torch.Tensor:
    """Decode image bytes into a uint8 tensor of shape (3, H, W), RGB, EXIF orientation applied.

    Raises :class:`InputError` (400), :class:`PayloadTooLarge` (413) or :class:`UnsupportedMediaType` (415).
    """
    settings = settings or Settings()
    data = bytes(data)
    fmt = sniff_format(data) or "image"
    with _pil_errors(fmt):
        fmt, opened = _open_checked(data, settings)
        return _decode_tensor(data, fmt, opened)


def _decode_tensor(data: bytes, fmt: str, opened: Image.Image, *, libjpeg: bool = True) -> torch.Tensor:
    """A checked image → uint8 (3, H, W): libjpeg-turbo for a plain RGB or grey JPEG (unless ``libjpeg`` is off),
    else PIL, whose decode also gives the precise error. Call inside :func:`_pil_errors`."""
    if libjpeg and fmt == "JPEG" and opened.mode in ("RGB", "L"):
        fast = _decode_jpeg_torchvision(data, *opened.size)
        if fast is not None:
            return fast
    return _hwc_tensor(_load_rgb(opened), fmt).permute(2, 0, 1)


def _load_rgb(opened: Image.Image) -> Image.Image:
    """Full decode of a checked image (first frame only for GIF/WebP animations). Call inside :func:`_pil_errors`."""
    opened.load()
    return _to_rgb(_apply_exif_orientation(opened))


def decode_crop(data: bytes | bytearray | memoryview, settings: Settings | None = None) -> torch.Tensor:
    """The CPU path: bytes → the weights' resize and centre crop → uint8 tensor (224, 224, 3), HWC.

    Same checks and errors as :func:`decode_image`; :func:`crop_pixels` batches the crops for the model. By
    :attr:`~resnet_serving.settings.Settings.cpu_resize`:

    * ``torch`` (the default): libjpeg-turbo decodes a JPEG straight into a tensor (other formats: PIL), and
      ``torchvision.transforms.v2`` resizes and crops it, with torch's uint8 antialiased kernel on CPUs with
      AVX2. About half the CPU of the PIL path; within one grey level of ``transforms()`` on the PIL image, in
      at most :data:`TORCH_RESIZE_TOLERANCE` of the values.
    * ``pil``: PIL decodes and resizes, bit-exact with ``transforms()`` on the decoded PIL image.

    A thin image (:data:`CROP_FIRST_ASPECT`) always takes PIL's crop-first resize (:func:`center_crop_pil`).
    """
    settings = settings or Settings()
    data = bytes(data)
    fmt = sniff_format(data) or "image"
    with _pil_errors(fmt):
        fmt, opened = _open_checked(data, settings)
        scaled = settings.jpeg_scaled_decode and fmt == "JPEG"
        if scaled:
            scaled_jpeg_draft(opened)
        if settings.cpu_resize == "pil" or _is_thin(*opened.size):
            return _hwc_tensor(center_crop_pil(_load_rgb(opened)), fmt)
        image = _decode_tensor(data, fmt, opened, libjpeg=not scaled)  # a scaled decode is PIL's draft mode
    return F2.center_crop(
        F2.resize(image, RESIZE_SIZE, interpolation=INTERPOLATION, antialias=ANTIALIAS), CROP_SIZE
    ).permute(1, 2, 0)


def scaled_jpeg_draft(opened: Image.Image) -> tuple[int, int]:
    """Ask libjpeg to decode ``opened`` (a JPEG, not yet loaded) at the smallest of 1/1, 1/2, 1/4 and 1/8 scale
    that still covers the resize's size, and return the size it will decode to.

    The inverse DCT then computes only the kept frequencies, so a photo several times larger than the resize
    costs a fraction of a full decode. Not bit-exact with ``transforms()``: libjpeg's downscale is a different
    low-pass than the antialiased bilinear resize (``RESNET_SERVING_JPEG_SCALED_DECODE``;
    docs: how-to/reduced-precision).
    """
    opened.draft(opened.mode, _resized_size(*opened.size))
    return opened.size


def _resized_size(width: int, height: int) -> tuple[int, int]:
    """The size ``Resize(232)`` gives a ``width``×``height`` image: the short side 232, the long one truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = RESIZE_SIZE[0], int(RESIZE_SIZE[0] * long / short)  # torchvision's rounding
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _is_thin(width: int, height: int) -> bool:
    return max(width, height) > CROP_FIRST_ASPECT * min(width, height)


def _source_span(start: int, length: int, in_len: int, out_len: int) -> tuple[int, int, float, float]:
    """Which source pixels ``[lo, hi)`` output pixels ``[start, start + length)`` of an ``in_len`` → ``out_len``
    antialiased bilinear resize read, and those outputs' box ``(b0, b1)`` relative to ``lo``.

    The bilinear filter reaches ``max(1, in_len / out_len)`` source pixels either side of each output's centre;
    one more pixel each side absorbs rounding. The span is clipped to the image, as the filter itself is.
    """
    scale = in_len / out_len
    reach = max(1.0, scale)
    b0, b1 = start * scale, (start + length) * scale
    lo = max(0, math.floor(b0 - reach) - 1)
    hi = min(in_len, math.ceil(b1 + reach) + 1)
    return lo, hi, b0 - lo, b1 - lo


def _kept_region(width: int, height: int) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
    """For a thin image: the source region ``(x0, y0, x1, y1)`` the centre crop reads, and the crop's box in it."""
    new_w, new_h = _resized_size(width, height)
    crop_h, crop_w = CROP_SIZE[0], CROP_SIZE[-1]
    top, left = round((new_h - crop_h) / 2.0), round((new_w - crop_w) / 2.0)  # as torchvision: int(round(x))
    x0, x1, bx0, bx1 = _source_span(left, crop_w, width, new_w)
    y0, y1, by0, by1 = _source_span(top, crop_h, height, new_h)
    return (x0, y0, x1, y1), (bx0, by0, bx1, by1)


def _resize_kept_region(region: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    return region.resize((CROP_SIZE[-1], CROP_SIZE[0]), Image.Resampling.BILINEAR, box=box)


def center_crop_pil(img: Image.Image) -> Image.Image:
    """``Resize(232, bilinear, antialias)`` then ``CenterCrop(224)`` on a PIL image, as torchvision computes them.

    Resizing the whole image then cropping is deliberate: PIL's ``resize(box=…)`` takes float32 box
    coordinates, and its output then differs from the reference by one grey level in many pixels. A thin image
    (:data:`CROP_FIRST_ASPECT`) takes that cost to bound the work: only the kept region is resized.
    """
    width, height = img.size
    new_w, new_h = _resized_size(width, height)
    crop_h, crop_w = CROP_SIZE[0], CROP_SIZE[-1]
    if new_w < crop_w or new_h < crop_h:  # cannot happen with 232 → 224, kept for other weights' sizes
        return F.center_crop(img.resize((new_w, new_h), Image.Resampling.BILINEAR), CROP_SIZE)
    if _is_thin(width, height):
        region, box = _kept_region(width, height)
        return _resize_kept_region(img.crop(region), box)
    top, left = round((new_h - crop_h) / 2.0), round((new_w - crop_w) / 2.0)  # as torchvision: int(round(x))
    resized = img.resize((new_w, new_h), Image.Resampling.BILINEAR) if (new_w, new_h) != img.size else img
    return resized.crop((left, top, left + crop_w, top + crop_h))


def _hwc_tensor(rgb: Image.Image, fmt: str) -> torch.Tensor:
    arr = np.array(rgb, dtype=np.uint8)  # a writable copy: torch.from_numpy shares memory
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"decoded {fmt} image has unexpected shape {arr.shape}")
    return torch.from_numpy(arr)


def crop_pixels(crops: Sequence[torch.Tensor], *, channels_last: bool = True) -> torch.Tensor:
    """uint8 (224, 224, 3) crops from :func:`decode_crop` → float32 (N, 3, 224, 224) pixel values 0–255.

    The model takes pixels, not the weights' normalised input: ``Classifier`` folds the normalisation into its
    first convolution, so one pass over the batch is all that is left here. Stacking HWC crops and viewing them
    as NCHW gives channels_last memory for free.
    """
    if not crops:
        raise ValueError("crop_pixels needs at least one crop")
    batch = torch.stack(list(crops)).permute(0, 3, 1, 2).float()
    return batch if channels_last else batch.contiguous()


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixel values 0–255 → the weights' normalised input, bit-exact with ``transforms()``'s last two steps
    (``convert_image_dtype`` divides by 255, then ImageNet mean/std). The reference the model's fold is checked
    against; serving never computes it."""
    return F.normalize(pixels / 255.0, mean=MEAN, std=STD)


def normalize_crops(crops: Sequence[torch.Tensor], *, channels_last: bool = True) -> torch.Tensor:
    """uint8 (224, 224, 3) crops → ``transforms()``'s normalised (N, 3, 224, 224) batch (the reference)."""
    return normalize(crop_pixels(crops, channels_last=channels_last))


def _decode_jpeg_torchvision(data: bytes, width: int, height: int) -> torch.Tensor | None:
    """libjpeg-turbo straight into a uint8 CHW tensor (cheaper than PIL plus a copy), EXIF applied.

    Returns None (the caller falls back to PIL, which produces the precise error) when torchvision refuses.
    """
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they are pinned here.
            warnings.simplefilter("ignore", DeprecationWarning)
            out = decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8),
                mode=ImageReadMode.RGB,
                apply_exif_orientation=True,
            )
    except RuntimeError:
        return None
    if out.ndim != 3 or out.shape[0] != 3 or {int(out.shape[1]), int(out.shape[2])} != {width, height}:
        return None
    return out  # a CHW view of libjpeg's HWC buffer: the resize does not need the cost of a transposing copy


def decode_jpeg_batch(datas: Sequence[bytes], device: torch.device | str) -> list[torch.Tensor] | None:
    """Decode many JPEGs in one call on ``device`` (nvJPEG on CUDA; the same call runs on CPU in tests).

    Only for bytes that already passed :func:`validate_header`. Returns None when the batch call fails, so the
    caller decodes one by one on the CPU and attributes the error to the right image.
    """
    if not datas:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out = decode_jpeg(
                [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas],
                mode=ImageReadMode.RGB,
                apply_exif_orientation=True,
                device=device,
            )
    except RuntimeError:
        return None
    return list(out)


def validate_header(data: bytes | bytearray | memoryview, settings: Settings | None = None) -> str:
    """The cheap checks of :func:`decode_image` (size, format, pixel count from the header). Returns
    ``"FORMAT:MODE"``, e.g. ``"JPEG:RGB"``."""
    settings = settings or Settings()
    data = bytes(data)
    with _pil_errors(sniff_format(data) or "image"):
        fmt, opened = _open_checked(data, settings)
        with opened:
            return f"{fmt}:{opened.mode}"


def _check_bytes(data: bytes, settings: Settings) -> str:
    """Byte cap and format sniffing, before PIL sees anything. Returns the format name."""
    if len(data) == 0:
        raise InputError("empty body: send the image bytes, e.g. curl --data-binary @cat.jpg")
    if len(data) > settings.max_image_bytes:
        raise PayloadTooLarge(
            f"image is {len(data)} bytes; the limit is {settings.max_image_bytes} bytes ({env_name('max_image_bytes')})"
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError(
            f"body is not a decodable image: expected JPEG, PNG, WebP, GIF or BMP bytes (first bytes: {data[:8]!r})"
        )
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"{fmt} images are not supported; send JPEG, PNG, WebP, GIF or BMP")
    return fmt


def _check_dimensions(width: int, height: int, settings: Settings) -> None:
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > settings.max_image_pixels:
        raise PayloadTooLarge(
            f"image is {width}×{height} = {pixels} pixels; the limit is {settings.max_image_pixels} "
            f"({env_name('max_image_pixels')})"
        )


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # a malformed EXIF block must not cost the user their prediction
        return img


def resize_pixels(images: Sequence[torch.Tensor], *, channels_last: bool = True) -> torch.Tensor:
    """uint8 (3, H, W) tensors → the weights' resize and centre crop, on their device → float32 (N, 3, 224, 224)
    pixel values 0–255 (the accelerator path's :func:`crop_pixels`)."""
    if not images:
        raise ValueError("resize_pixels needs at least one image")
    batch = torch.stack([_resize_center_crop(img) for img in images]).float()
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def preprocess(images: Sequence[torch.Tensor], *, channels_last: bool = True) -> torch.Tensor:
    """uint8 (3, H, W) tensors → ``transforms()``'s normalised (N, 3, 224, 224) batch (the reference)."""
    return normalize(resize_pixels(images, channels_last=channels_last))


def _resize_center_crop(img: torch.Tensor) -> torch.Tensor:
    """``Resize(232)`` + ``CenterCrop(224)`` on a (3, H, W) uint8 tensor.

    torch's resize takes no source box, so a thin image's kept region is cut out on its device and resized by
    PIL, as :func:`center_crop_pil` does: a few kilobytes cross to the host, never the whole image.
    """
    height, width = int(img.shape[-2]), int(img.shape[-1])
    if not _is_thin(width, height):
        return F.center_crop(F.resize(img, RESIZE_SIZE, interpolation=INTERPOLATION, antialias=ANTIALIAS), CROP_SIZE)
    (x0, y0, x1, y1), box = _kept_region(width, height)
    region = img[:, y0:y1, x0:x1].permute(1, 2, 0).cpu().numpy()
    crop = _resize_kept_region(Image.fromarray(np.ascontiguousarray(region), "RGB"), box)
    return torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).to(img.device)


def categories() -> list[str]:
    """The 1000 ImageNet category names that torchvision ships offline (index → label)."""
    return list(WEIGHTS.meta["categories"])
