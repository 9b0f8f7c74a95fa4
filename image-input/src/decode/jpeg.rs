//! JPEG specifics: one walk over the marker segments (the EXIF block, whether the data ends
//! before its end-of-image marker), the DCT-domain reduction to decode at, the centre region a
//! crop needs, and the decoders — libjpeg-turbo first (feature `turbojpeg`), jpeg-decoder's
//! scaled IDCT and the `image` crate after it.

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

#[cfg(feature = "turbojpeg")]
use super::turbo;
#[cfg(any(feature = "turbojpeg", test))]
use super::Frame;
use super::{CentreCrop, FailureKind, ImageFailure};
#[cfg(feature = "turbojpeg")]
use super::{DecodeOptions, DecodedImage};

/// What one walk over a JPEG's marker segments finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout<'a> {
    /// The TIFF data of the first `Exif` APP1 segment.
    pub exif: Option<&'a [u8]>,
    /// Whether the data ends before the end-of-image marker of the (first) image.
    pub truncated: bool,
}

impl<'a> Layout<'a> {
    /// Walks the segments of `bytes` from the start-of-image marker to the end-of-image marker:
    /// headers are skipped by their lengths, entropy-coded data searched for the next marker
    /// (in it FF is followed by 00 or a restart marker), so data after the image (camera
    /// trailers, a second MPF image) is never mistaken for it.
    pub fn scan(bytes: &'a [u8]) -> Self {
        let mut exif = None;
        let mut i = 2; // after SOI
        loop {
            // the next marker: skip anything that is not FF (libjpeg warns and does the same),
            // then FF fill bytes
            match memchr::memchr(0xFF, bytes.get(i..).unwrap_or_default()) {
                Some(k) => i += k,
                None => return Self { exif, truncated: true },
            }
            while bytes.get(i) == Some(&0xFF) {
                i += 1;
            }
            let Some(&marker) = bytes.get(i) else { return Self { exif, truncated: true } };
            i += 1;
            match marker {
                0xD9 => return Self { exif, truncated: false },
                0x00 | 0x01 | 0xD0..=0xD8 => continue, // no length
                _ => {}
            }
            let Some(len) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
                return Self { exif, truncated: true };
            };
            let body = i + 2..i + len.max(2);
            if body.end > bytes.len() {
                return Self { exif, truncated: true };
            }
            if marker == 0xE1 && exif.is_none() {
                exif = bytes[body.clone()].strip_prefix(b"Exif\0\0");
            }
            i = body.end;
            if marker == 0xDA && !skip_entropy_coded(bytes, &mut i) {
                return Self { exif, truncated: true };
            }
        }
    }

    /// The EXIF orientation (none, or an unreadable one: as stored).
    #[cfg(feature = "turbojpeg")]
    pub fn orientation(&self) -> Orientation {
        self.exif.and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms)
    }
}

/// Moves `i` from the start of entropy-coded data to the FF of the marker that ends it; false
/// if the data ends first.
fn skip_entropy_coded(bytes: &[u8], i: &mut usize) -> bool {
    loop {
        let Some(k) = memchr::memchr(0xFF, bytes.get(*i..).unwrap_or_default()) else { return false };
        let at = *i + k;
        match bytes.get(at + 1) {
            None => return false,
            Some(0x00 | 0xD0..=0xD7) => *i = at + 2, // stuffed byte, restart marker
            Some(0xFF) => *i = at + 1,               // fill byte before a marker
            Some(_) => {
                *i = at;
                return true;
            }
        }
    }
}

/// Whether a JPEG's data ends before the end-of-image marker of its image.
pub fn jpeg_truncated(bytes: &[u8]) -> bool {
    Layout::scan(bytes).truncated
}

/// The largest JPEG IDCT reduction (1, 2, 4 or 8) that keeps the short side of a `w x h`
/// image at least `min_short` pixels. Only these: libjpeg-turbo's SIMD code covers 1/2, 1/4
/// and 1/8, and its other eighths (3/8, 5/8 …) decode slower than the next larger of them.
pub fn jpeg_reduction(w: u32, h: u32, min_short: u32) -> u32 {
    let short = w.min(h);
    [8, 4, 2].into_iter().find(|&r| short.div_ceil(r) >= min_short).unwrap_or(1)
}

/// The part of a `w x h` image a centre crop reads: its square, plus a border for the resize
/// filter's support (and libjpeg-turbo's upsampling context) so that the pixels it samples
/// are those of a whole decode. `None` when that is the whole image. The square is centred,
/// so the region is the same whichever way EXIF orientation later turns the image.
pub fn centre_region(w: u32, h: u32, crop: CentreCrop) -> Option<(u32, u32, u32, u32)> {
    let c = f64::from(w.min(h)) * crop.fraction;
    let border = (c / f64::from(crop.output_size.max(1))).ceil() + 2.0;
    let span = |len: u32| {
        let start = (f64::from(len) - c) / 2.0;
        let lo = (start - border).floor().max(0.0) as u32;
        let hi = ((start + c + border).ceil() as u32).min(len);
        (lo, hi.saturating_sub(lo))
    };
    let ((x, cw), (y, ch)) = (span(w), span(h));
    ((cw, ch) != (w, h) && cw > 0 && ch > 0).then_some((x, y, cw, ch))
}

#[cfg(any(feature = "turbojpeg", test))]
/// The frame of a decoded region after `orientation` turns it: the region `(x, y, w, h)` of a
/// `full_w x full_h` image, as it lies in the turned image.
pub fn orient_frame(
    orientation: Orientation,
    region: (u32, u32, u32, u32),
    full_w: u32,
    full_h: u32,
) -> Frame {
    use Orientation::*;
    let (x, y, w, h) = region;
    let (fw, fh) = (full_w, full_h);
    let (left, top, width, height) = match orientation {
        NoTransforms => (x, y, fw, fh),
        FlipHorizontal => (fw - x - w, y, fw, fh),
        FlipVertical => (x, fh - y - h, fw, fh),
        Rotate180 => (fw - x - w, fh - y - h, fw, fh),
        // clockwise: (px, py) -> (fh - 1 - py, px)
        Rotate90 => (fh - y - h, x, fh, fw),
        // counter-clockwise: (px, py) -> (py, fw - 1 - px)
        Rotate270 => (y, fw - x - w, fh, fw),
        // transpose: (px, py) -> (py, px)
        Rotate90FlipH => (y, x, fh, fw),
        // transverse: (px, py) -> (fh - 1 - py, fw - 1 - px)
        Rotate270FlipH => (fh - y - h, fw - x - w, fh, fw),
    };
    Frame { width, height, left, top }
}

/// Whether `o` swaps width and height.
pub fn swaps_axes(o: Orientation) -> bool {
    use Orientation::*;
    matches!(o, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH)
}

/// Decodes with libjpeg-turbo at the reduction `opts` allows, only the region a centre crop
/// needs, orientation applied. `Ok(None)` for what it leaves to the general decoder: CMYK,
/// 12-bit and lossless JPEGs, and data it reports damaged (the general decoder then gives its
/// verdict, as without this feature).
#[cfg(feature = "turbojpeg")]
pub fn decode_turbo(
    bytes: &[u8],
    layout: &Layout<'_>,
    opts: &DecodeOptions,
) -> Result<Option<DecodedImage>, ImageFailure> {
    let Ok(head) = turbo::header(bytes) else { return Ok(None) };
    if !head.scalable_rgb {
        return Ok(None);
    }
    let (w, h) = (head.width, head.height);
    super::check_pixels(w, h, opts)?;
    let reduction = opts.jpeg_min_short_side.map_or(1, |min| jpeg_reduction(w, h, min));
    let (sw, sh) = (turbo::scaled(w, reduction), turbo::scaled(h, reduction));
    let want = opts.centre_crop.and_then(|c| centre_region(sw, sh, c)).map(|(x, y, w, h)| turbo::Rect {
        x,
        y,
        w,
        h,
    });
    let Ok(d) = turbo::decode(bytes, &head, reduction, want) else { return Ok(None) };
    let r = d.region;
    let rgb = RgbImage::from_raw(r.w, r.h, d.rgb).expect("libjpeg-turbo wrote region.w x region.h RGB");
    let orientation = layout.orientation();
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    let frame = orient_frame(orientation, (r.x, r.y, r.w, r.h), d.scaled_width, d.scaled_height);
    let (width, height) = if swaps_axes(orientation) { (h, w) } else { (w, h) };
    Ok(Some(DecodedImage { rgb: img.into_rgb8(), width, height, frame }))
}

/// Decodes a YCbCr or greyscale JPEG at 1/`reduction` scale with jpeg-decoder's scaled IDCT
/// (the path without libjpeg-turbo); `None` for what it does not handle (CMYK, 16-bit), which
/// then takes the full-size path.
pub fn decode_scaled_fallback(bytes: &[u8], w: u32, h: u32, reduction: u32) -> Option<DynamicImage> {
    let mut dec = jpeg_decoder::Decoder::new(bytes);
    let (sw, sh) = dec.scale(w.div_ceil(reduction) as u16, h.div_ceil(reduction) as u16).ok()?;
    let pixels = dec.decode().ok()?;
    let info = dec.info()?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}

/// The failure of a JPEG whose data ends early (decoders would pad it with grey).
pub fn truncated_failure() -> ImageFailure {
    ImageFailure::new(FailureKind::Corrupt, "Jpeg: truncated (the data ends before the end-of-image marker)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    /// SOI, an APP1 with `exif`, an SOS whose data holds stuffed FF 00 and a restart marker.
    fn jpeg_like(exif: &[u8], with_eoi: bool, trailer: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8];
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(exif);
        b.extend(segment(0xE1, &app1));
        b.extend(segment(0xDB, &[0; 65]));
        b.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        b.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF]);
        if with_eoi {
            b.extend_from_slice(&[0xFF, 0xD9]);
        }
        b.extend_from_slice(trailer);
        b
    }

    #[test]
    fn the_walk_finds_exif_and_the_end_of_the_image() {
        let tiff = b"MM\0*\0\0\0\x08";
        let whole = jpeg_like(tiff, true, b"");
        assert_eq!(Layout::scan(&whole), Layout { exif: Some(&tiff[..]), truncated: false });
        // a trailer after the end (with bytes that look like markers) changes nothing
        let trailed = jpeg_like(tiff, true, &[0xFF, 0xDA, 0x00, 0x10, 1, 2, 3]);
        assert!(!Layout::scan(&trailed).truncated);
        // cut anywhere before the end-of-image marker: truncated
        for cut in 2..whole.len() - 1 {
            assert!(Layout::scan(&whole[..cut]).truncated, "cut at {cut}");
        }
        assert!(Layout::scan(&jpeg_like(tiff, false, b"")).truncated);
    }

    #[test]
    fn reductions_keep_the_short_side() {
        assert_eq!(jpeg_reduction(2048, 1365, 512), 2);
        assert_eq!(jpeg_reduction(4096, 2731, 512), 4);
        assert_eq!(jpeg_reduction(640, 427, 256), 1);
        assert_eq!(jpeg_reduction(6000, 4000, 256), 8);
    }

    #[test]
    fn the_centre_region_holds_the_crop_and_its_border() {
        let crop = CentreCrop { fraction: 0.875, output_size: 224 };
        // 1024 x 683: the square is 597.625 px from x = 213.19, the border ceil(2.67) + 2 = 5
        assert_eq!(centre_region(1024, 683, crop), Some((208, 37, 608, 609)));
        // a portrait turns the same way
        assert_eq!(centre_region(683, 1024, crop), Some((37, 208, 609, 608)));
        // a crop that with its border is the whole image: no region
        assert_eq!(centre_region(300, 300, CentreCrop { fraction: 1.0, output_size: 224 }), None);
    }

    #[test]
    fn frames_follow_each_orientation() {
        use Orientation::*;
        // mark the region (10, 20, 30, 40) of a 100 x 80 image, turn the image with the image
        // crate, and find where the marked pixels went
        let (fw, fh, region) = (100, 80, (10, 20, 30, 40));
        let marked = image::GrayImage::from_fn(fw, fh, |x, y| {
            let inside = (10..40).contains(&x) && (20..60).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        });
        for o in [
            NoTransforms,
            FlipHorizontal,
            FlipVertical,
            Rotate180,
            Rotate90,
            Rotate270,
            Rotate90FlipH,
            Rotate270FlipH,
        ] {
            let mut img = DynamicImage::ImageLuma8(marked.clone());
            img.apply_orientation(o);
            let turned = img.into_luma8();
            let at: Vec<(u32, u32)> =
                turned.enumerate_pixels().filter(|p| p.2 .0[0] == 255).map(|p| (p.0, p.1)).collect();
            let left = at.iter().map(|p| p.0).min().unwrap();
            let top = at.iter().map(|p| p.1).min().unwrap();
            let f = orient_frame(o, region, fw, fh);
            assert_eq!(
                (f.left, f.top, f.width, f.height),
                (left, top, turned.width(), turned.height()),
                "{o:?}"
            );
            assert_eq!(swaps_axes(o), turned.width() != fw, "{o:?}");
        }
    }
}
