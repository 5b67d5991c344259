#!/usr/bin/python3
"""Builds the decoding and preprocessing golden files of models/imageio and models/preprocess.

Dev-time only: run with Debian's /usr/bin/python3 (PIL 9.4, torchvision 0.14, numpy):

    /usr/bin/python3 models/recipe/make_decode_fixtures.py [REPO_ROOT]

The reference is what OML sees: PIL's Image.open(path).convert("RGB"), then torchvision's
Resize(224, BICUBIC) + CenterCrop(224) (+ ToTensor + Normalize). Output is deterministic
(fixed seeds, no timestamps).

models/imageio/testdata/
  <name>.<ext>        the decoding matrix: JPEG (baseline 4:2:0/4:2:2/4:4:4, progressive,
                      greyscale, Adobe CMYK, tiny; and from the small encoder below 4:4:0,
                      4:1:1, Adobe RGB, Adobe YCCK), PNG (RGB 8/16-bit, RGBA 8/16-bit, grey
                      8/16-bit, grey+alpha, palette, palette+tRNS, 1-bit, no IEND), GIF
                      (animated; frame smaller than the screen with and without
                      transparency), WebP (lossy, lossy+alpha, lossless), a PNG named .jpg,
                      and bad files (empty, truncated JPEG/PNG/GIF/WebP, text, a PNG "bomb" whose
                      header claims 100000x100000 pixels, BMP, animated WebP).
  <name>.rgb.png      PIL's convert("RGB") of each decodable file (8-bit RGB PNG).
  fixtures.json       per file: format, size, PIL mode, and for decodable files the SHA-256
                      of PIL's RGB bytes and of the uint8 224x224 crop after
                      Resize(224, BICUBIC) + CenterCrop(224) (row-major RGB bytes).
models/preprocess/testdata/
  cases.json          resize and pipeline cases on synthetic "pattern" images (an integer
                      formula, reimplemented in the Go test): SHA-256 of PIL's
                      Image.resize(BICUBIC) output, of the uint8 centre crop after the
                      torchvision pipeline (with optional crop box and several
                      resize_to/crop_size), and of the float32 CHW tensor.
  tensor_97x61_r40_c32.f32  a full float32 tensor (little-endian CHW) for one small case.
"""
import hashlib
import io
import json
import os
import re
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def sha(b):
    return hashlib.sha256(bytes(b)).hexdigest()


def photo(w, h, seed, noise=6.0):
    """A small photo-like RGB image: gradients, discs, a stripe band and mild noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 40 + 180 * x / max(w - 1, 1)
    img[..., 1] = 200 - 150 * y / max(h - 1, 1)
    img[..., 2] = 90 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, max(4, min(w, h) / 3))
        col = rng.uniform(0, 255, 3)
        m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[m] = col
    band = (x + 2 * y) % 17 < 3
    img[band] = img[band] * 0.3 + 170
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pattern(w, h):
    """Integer-only synthetic image with hard edges; the Go tests compute the same."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    r = (x * 5 + y * 3 + ((x * y) >> 4)) & 255
    g = ((x ^ y) * 7) & 255
    b = ((x // 7 + y // 5) % 2) * 200 + 30
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def torch_pipeline(img, resize_to, crop):
    tf = T.Compose([T.Resize(resize_to, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(crop)])
    return tf(img)


def to_tensor(img):
    t = T.Normalize(MEAN, STD)(T.ToTensor()(img))
    assert t.dtype == torch.float32
    return t.numpy().astype("<f4").tobytes()


# ---------------------------------------------------------------- PNG writer for 16-bit


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(w, h, depth, color_type, rows, extra=b""):
    """rows: raw scanline bytes without filter bytes."""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def png16(arr):
    """arr: uint16 HxWxC (C = 3 or 4)."""
    h, w, c = arr.shape
    ct = {3: 2, 4: 6}[c]
    rows = [arr[i].astype(">u2").tobytes() for i in range(h)]
    return write_png(w, h, 16, ct, rows)


def bomb_png():
    """IHDR claims 100000x100000 RGB; the IDAT holds two real rows."""
    w = h = 100000
    raw = (b"\x00" + bytes(3 * w)) * 2
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


# ---------------------------------------------------------------- GIF patching


def gif_image_descriptor_offset(data):
    pos = 13
    if data[10] & 0x80:
        pos += 3 << (1 + (data[10] & 7))
    while True:
        if data[pos] == 0x21:
            pos += 2
            while data[pos]:
                pos += 1 + data[pos]
            pos += 1
        elif data[pos] == 0x2C:
            return pos
        else:
            raise ValueError("unexpected GIF block 0x%02x" % data[pos])


def gif_on_bigger_screen(frame, screen, offset, transparency):
    """Saves a single-frame GIF, then enlarges its logical screen and moves the frame."""
    b = io.BytesIO()
    kw = {"transparency": transparency} if transparency is not None else {}
    frame.save(b, "GIF", **kw)
    d = bytearray(b.getvalue())
    d[6:10] = struct.pack("<HH", *screen)
    p = gif_image_descriptor_offset(d)
    d[p + 1:p + 5] = struct.pack("<HH", *offset)
    return bytes(d)


def palette_image(w, h, seed, colours=40):
    rgb = Image.fromarray(photo(w, h, seed))
    return rgb.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


# ---------------------------------------------------------------- minimal JPEG encoder
# PIL's encoder only writes 4:4:4, 4:2:2 and 4:2:0 YCbCr, greyscale and Adobe CMYK. This
# baseline encoder writes the other layouts found in the wild (4:4:0, 4:1:1, Adobe RGB,
# Adobe YCCK) so the decoder can be compared with libjpeg on them. It stores whatever
# samples it is given; the decoders then do their own colour conversion.


def _jpeg_segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _huffman_codes(lengths_count, symbols):
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(lengths_count[length - 1]):
            codes[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


# Flat canonical tables: 12 DC categories in 4 bits, all 162 AC symbols in 8 bits.
_DC_BITS = [0, 0, 0, 12] + [0] * 12
_DC_SYMS = list(range(12))
_AC_SYMS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
_AC_BITS = [0] * 7 + [len(_AC_SYMS)] + [0] * 8
_DC_CODES = _huffman_codes(_DC_BITS, _DC_SYMS)
_AC_CODES = _huffman_codes(_AC_BITS, _AC_SYMS)
_ZIGZAG = sorted(((x, y) for y in range(8) for x in range(8)),
                 key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]))
_DCT = np.array([[(np.sqrt(0.5) if u == 0 else 1.0) * np.cos((2 * x + 1) * u * np.pi / 16) for x in range(8)]
                 for u in range(8)]) / 2.0


class _Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self):
        while self.n:
            self.put(1, 1)
        return bytes(self.out)


def _magnitude(v):
    s = int(abs(v)).bit_length()
    return s, (v if v >= 0 else v + (1 << s) - 1)


def encode_jpeg(planes, sampling, quant=3, adobe_transform=None):
    """planes: full-size uint8 HxW arrays, one per component; sampling: (h, v) per
    component. Chroma planes are box-averaged down to their sampling factors."""
    h_img, w_img = planes[0].shape
    hmax, vmax = max(s[0] for s in sampling), max(s[1] for s in sampling)
    mcux, mcuy = -(-w_img // (8 * hmax)), -(-h_img // (8 * vmax))
    comps = []
    for plane, (hs, vs) in zip(planes, sampling):
        fx, fy = hmax // hs, vmax // vs
        cw, ch = -(-w_img * hs // hmax), -(-h_img * vs // vmax)
        p = np.pad(plane.astype(np.float64), ((0, ch * fy - h_img), (0, cw * fx - w_img)), mode="edge")
        p = p.reshape(ch, fy, cw, fx).mean(axis=(1, 3))
        p = np.pad(p, ((0, mcuy * vs * 8 - ch), (0, mcux * hs * 8 - cw)), mode="edge")
        comps.append((p - 128.0, hs, vs))
    bits, pred = _Bits(), [0] * len(comps)
    for my in range(mcuy):
        for mx in range(mcux):
            for ci, (p, hs, vs) in enumerate(comps):
                for by in range(vs):
                    for bx in range(hs):
                        y0, x0 = (my * vs + by) * 8, (mx * hs + bx) * 8
                        coef = _DCT @ p[y0:y0 + 8, x0:x0 + 8] @ _DCT.T
                        q = [int(np.rint(coef[r, c] / quant)) for r, c in _ZIGZAG]
                        s, m = _magnitude(q[0] - pred[ci])
                        pred[ci] = q[0]
                        bits.put(*_DC_CODES[s])
                        bits.put(m, s)
                        run = 0
                        for k in range(1, 64):
                            if q[k] == 0:
                                run += 1
                                continue
                            while run > 15:
                                bits.put(*_AC_CODES[0xF0])
                                run -= 16
                            s, m = _magnitude(q[k])
                            bits.put(*_AC_CODES[(run << 4) | s])
                            bits.put(m, s)
                            run = 0
                        if run:
                            bits.put(*_AC_CODES[0x00])
    n = len(planes)
    out = b"\xff\xd8"
    if adobe_transform is None:
        out += _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    else:
        out += _jpeg_segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, adobe_transform))
    out += _jpeg_segment(0xDB, b"\x00" + bytes([quant] * 64))
    sof = struct.pack(">BHHB", 8, h_img, w_img, n)
    for i, (hs, vs) in enumerate(sampling):
        sof += bytes([i + 1, (hs << 4) | vs, 0])
    out += _jpeg_segment(0xC0, sof)
    out += _jpeg_segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_SYMS))
    out += _jpeg_segment(0xC4, b"\x10" + bytes(_AC_BITS) + bytes(_AC_SYMS))
    sos = bytes([n]) + b"".join(bytes([i + 1, 0x00]) for i in range(n)) + b"\x00\x3f\x00"
    return out + _jpeg_segment(0xDA, sos) + bits.flush() + b"\xff\xd9"


def ycbcr_planes(rgb):
    y, cb, cr = Image.fromarray(rgb).convert("YCbCr").split()
    return [np.asarray(y), np.asarray(cb), np.asarray(cr)]


# ---------------------------------------------------------------- decoding matrix


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def decoding_matrix():
    """Returns {filename: bytes} for every fixture."""
    f = {}
    rgb = Image.fromarray(photo(67, 45, 1))
    f["jpeg_baseline_420.jpg"] = encode(rgb, "JPEG", quality=90, subsampling=2)
    f["jpeg_baseline_422.jpg"] = encode(rgb, "JPEG", quality=90, subsampling=1)
    f["jpeg_baseline_444.jpg"] = encode(rgb, "JPEG", quality=90, subsampling=0)
    f["jpeg_progressive.jpg"] = encode(Image.fromarray(photo(70, 52, 2)), "JPEG", quality=85, progressive=True, subsampling=2)
    f["jpeg_grey.jpg"] = encode(Image.fromarray(photo(51, 38, 3)).convert("L"), "JPEG", quality=90)
    f["jpeg_cmyk.jpg"] = encode(Image.fromarray(photo(43, 30, 4)).convert("CMYK"), "JPEG", quality=90)
    f["jpeg_tiny.jpg"] = encode(Image.fromarray(photo(3, 2, 5)), "JPEG", quality=95, subsampling=2)
    f["jpeg_440.jpg"] = encode_jpeg(ycbcr_planes(photo(45, 37, 30)), [(1, 2), (1, 1), (1, 1)])
    f["jpeg_411.jpg"] = encode_jpeg(ycbcr_planes(photo(53, 19, 31)), [(4, 1), (1, 1), (1, 1)])
    rgbp = photo(29, 23, 32)
    f["jpeg_adobe_rgb.jpg"] = encode_jpeg([rgbp[..., 0], rgbp[..., 1], rgbp[..., 2]], [(1, 1)] * 3, adobe_transform=0)
    ycck = ycbcr_planes(photo(31, 27, 33)) + [np.asarray(Image.fromarray(photo(31, 27, 34)).convert("L"))]
    f["jpeg_ycck.jpg"] = encode_jpeg(ycck, [(1, 1)] * 4, adobe_transform=2)
    f["jpeg_large.jpg"] = encode(Image.fromarray(photo(400, 260, 6, noise=0)), "JPEG", quality=80, subsampling=2)

    f["png_rgb8.png"] = encode(Image.fromarray(photo(61, 43, 7)), "PNG")
    rgba = photo(53, 41, 8)
    alpha = (np.arange(53 * 41).reshape(41, 53) * 37 % 256).astype(np.uint8)
    alpha[:5, :] = 0  # fully transparent rows keep their colour in PIL's RGB
    f["png_rgba8.png"] = encode(Image.fromarray(np.dstack([rgba, alpha]), "RGBA"), "PNG")
    rng = np.random.RandomState(9)
    base16 = photo(47, 33, 9).astype(np.uint16) * 257 + rng.randint(-200, 200, (33, 47, 3)).astype(np.int64)
    base16 = np.clip(base16, 0, 65535).astype(np.uint16)
    f["png_rgb16.png"] = png16(base16)
    a16 = (np.arange(47 * 33).reshape(33, 47, 1) * 1013 % 65536).astype(np.uint16)
    f["png_rgba16.png"] = png16(np.concatenate([base16, a16], axis=2))
    f["png_grey8.png"] = encode(Image.fromarray(photo(59, 40, 10)).convert("L"), "PNG")
    g16 = (np.arange(41 * 29).reshape(29, 41) * 97 % 700).astype(np.uint16)  # many values > 255
    f["png_grey16.png"] = encode(Image.fromarray(g16), "PNG")
    grey = np.array(Image.fromarray(photo(44, 36, 11)).convert("L"))
    ga = (np.arange(44 * 36).reshape(36, 44) * 11 % 256).astype(np.uint8)
    f["png_greyalpha.png"] = encode(Image.fromarray(np.dstack([grey, ga]), "LA"), "PNG")
    pal = palette_image(57, 39, 12)
    f["png_palette.png"] = encode(pal, "PNG")
    trns = bytes((i * 23) % 256 for i in range(40))
    f["png_palette_trns.png"] = encode(pal, "PNG", transparency=trns)
    f["png_1bit.png"] = encode(Image.fromarray(photo(37, 29, 13)).convert("1"), "PNG")
    f["png_noiend.png"] = encode(Image.fromarray(photo(35, 27, 14)), "PNG")[:-12]
    f["png_named.jpg"] = encode(Image.fromarray(photo(33, 25, 15)), "PNG")

    frames = [palette_image(48, 34, 16 + i, colours=60).convert("RGB") for i in range(3)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    f["gif_anim.gif"] = b.getvalue()
    small = palette_image(20, 14, 19, colours=30)
    f["gif_offset.gif"] = gif_on_bigger_screen(small, (31, 23), (6, 4), None)
    f["gif_offset_trns.gif"] = gif_on_bigger_screen(small, (31, 23), (9, 5), 5)

    wp = Image.fromarray(photo(63, 47, 20))
    f["webp_lossy.webp"] = encode(wp, "WEBP", quality=80, method=4)
    wpa = np.dstack([photo(50, 37, 21), (np.arange(50 * 37).reshape(37, 50) * 7 % 256).astype(np.uint8)])
    f["webp_lossy_alpha.webp"] = encode(Image.fromarray(wpa, "RGBA"), "WEBP", quality=80, method=4)
    f["webp_lossless.webp"] = encode(Image.fromarray(photo(45, 31, 22)), "WEBP", lossless=True)

    # Bad files.
    f["bad_empty.jpg"] = b""
    good = f["jpeg_baseline_420.jpg"]
    f["bad_truncated.jpg"] = good[: len(good) * 2 // 3]
    good = f["png_rgb8.png"]
    f["bad_truncated.png"] = good[: len(good) // 2]
    good = f["gif_anim.gif"]
    f["bad_truncated.gif"] = good[: len(good) // 3]
    good = f["webp_lossy.webp"]
    f["bad_truncated.webp"] = good[: len(good) // 2]
    f["bad_text.jpg"] = b"<html><body>404 Not Found</body></html>\n"
    f["bad_bomb.png"] = bomb_png()
    f["bad_bmp.jpg"] = encode(Image.fromarray(photo(9, 7, 23)), "BMP")
    anim = [Image.fromarray(photo(16, 12, 24 + i)) for i in range(2)]
    b = io.BytesIO()
    anim[0].save(b, "WEBP", save_all=True, append_images=anim[1:], duration=100, lossless=True)
    f["bad_anim.webp"] = b.getvalue()
    return f


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    dec_dir = os.path.join(root, "models", "imageio", "testdata")
    pre_dir = os.path.join(root, "models", "preprocess", "testdata")
    os.makedirs(dec_dir, exist_ok=True)
    os.makedirs(pre_dir, exist_ok=True)

    index = {}
    for name, data in sorted(decoding_matrix().items()):
        with open(os.path.join(dec_dir, name), "wb") as fh:
            fh.write(data)
        entry = {"bytes": len(data)}
        try:
            im = Image.open(io.BytesIO(data))
            entry.update(pil_format=im.format, pil_mode=im.mode, width=im.size[0], height=im.size[1])
            rgb = im.convert("RGB")
        except Exception as e:  # noqa: BLE001 - we record why PIL refuses a file
            # Without object addresses, so the index is deterministic.
            entry["pil_error"] = re.sub(r" at 0x[0-9a-f]+", "", "%s: %s" % (type(e).__name__, e))
            index[name] = entry
            continue
        arr = np.asarray(rgb)
        entry["rgb_sha256"] = sha(arr.tobytes())
        crop = np.asarray(torch_pipeline(rgb, 224, 224))
        assert crop.shape == (224, 224, 3), crop.shape
        entry["crop224_sha256"] = sha(crop.tobytes())
        stem = os.path.splitext(name)[0]
        # Through numpy so no transparency/ICC info leaks into the golden PNG.
        Image.fromarray(arr).save(os.path.join(dec_dir, stem + ".rgb.png"), "PNG", optimize=True)
        index[name] = entry
    with open(os.path.join(dec_dir, "fixtures.json"), "w") as fh:
        json.dump(index, fh, indent=1, sort_keys=True)
        fh.write("\n")

    write_preprocess_cases(pre_dir)


def write_preprocess_cases(pre_dir):
    rng = np.random.RandomState(20240522)
    resize = []
    fixed = [((97, 61), (224, 141)), ((97, 61), (13, 7)), ((97, 61), (1, 1)), ((97, 61), (200, 3)),
             ((5, 3), (224, 134)), ((1, 1), (224, 224)), ((1, 7), (3, 300)), ((640, 480), (298, 224)),
             ((97, 61), (97, 61)), ((97, 61), (97, 30)), ((97, 61), (40, 61)), ((2, 2), (1, 1)),
             ((1000, 3), (224, 1)), ((300, 300), (299, 301)), ((1024, 683), (335, 224))]
    for _ in range(60):
        sw, sh = rng.randint(1, 300, 2)
        ow, oh = rng.randint(1, 300, 2)
        fixed.append(((int(sw), int(sh)), (int(ow), int(oh))))
    for (sw, sh), (ow, oh) in fixed:
        out = Image.fromarray(pattern(sw, sh)).resize((ow, oh), Image.BICUBIC)
        resize.append({"src": [sw, sh], "out": [ow, oh], "sha256": sha(np.asarray(out).tobytes())})

    pipeline = []
    specs = [
        ((640, 480), None, 224, 224), ((480, 640), None, 224, 224), ((500, 500), None, 224, 224),
        ((1024, 683), None, 224, 224), ((97, 61), None, 224, 224), ((1, 1), None, 224, 224),
        ((2, 3), None, 224, 224), ((1000, 3), None, 224, 224), ((3, 700), None, 224, 224),
        ((225, 224), None, 224, 224), ((224, 224), None, 224, 224), ((226, 1000), None, 224, 224),
        ((640, 480), [100, 50, 400, 300], 224, 224), ((640, 480), [0, 0, 1, 480], 224, 224),
        ((640, 480), [639, 479, 640, 480], 224, 224), ((640, 480), [13, 7, 627, 470], 224, 224),
        ((640, 480), None, 256, 224), ((333, 250), None, 256, 224), ((97, 61), None, 37, 31),
        ((97, 61), [10, 3, 80, 59], 24, 20), ((300, 123), None, 40, 32), ((123, 300), None, 41, 40),
        # Boxes partly outside the image: PIL's crop pads with black.
        ((640, 480), [600, 400, 700, 520], 224, 224), ((97, 61), [-10, -20, 50, 40], 37, 31),
    ]
    for _ in range(20):
        sw, sh = (int(v) for v in rng.randint(1, 700, 2))
        l, t = int(rng.randint(0, sw)), int(rng.randint(0, sh))
        r, b = int(rng.randint(l + 1, sw + 1)), int(rng.randint(t + 1, sh + 1))
        rt = int(rng.choice([224, 224, 256, 37]))
        specs.append(((sw, sh), [l, t, r, b], rt, min(rt, 224 if rt != 37 else 31)))
    for (sw, sh), box, rt, cs in specs:
        img = Image.fromarray(pattern(sw, sh))
        if box is not None:
            img = img.crop(tuple(box))
        crop = torch_pipeline(img, rt, cs)
        arr = np.asarray(crop)
        assert arr.shape == (cs, cs, 3)
        pipeline.append({"src": [sw, sh], "box": box, "resize_to": rt, "crop_size": cs,
                         "crop_sha256": sha(arr.tobytes()), "tensor_sha256": sha(to_tensor(crop))})

    with open(os.path.join(pre_dir, "cases.json"), "w") as fh:
        json.dump({"mean": MEAN, "std": STD, "resize": resize, "pipeline": pipeline}, fh, indent=1)
        fh.write("\n")
    small = torch_pipeline(Image.fromarray(pattern(97, 61)), 40, 32)
    with open(os.path.join(pre_dir, "tensor_97x61_r40_c32.f32"), "wb") as fh:
        fh.write(to_tensor(small))


if __name__ == "__main__":
    main()
