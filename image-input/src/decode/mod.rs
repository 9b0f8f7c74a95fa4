//! Image bytes into 8-bit RGB, or a recorded reason why not. Decoding sees bytes and, as a
//! hint for SVG only, the extension of their name: never where they came from.
//!
//! JPEG (baseline, progressive, CMYK; EXIF orientation applied), PNG (8/16-bit, palette, alpha),
//! GIF (first frame), WebP, TIFF and BMP through the `image` crate, with the format sniffed from
//! the bytes, not the extension; SVG rasterised with resvg, with external references (files,
//! URLs) refused so an image can never read anything but itself. Formats recognised but not
//! decoded (AVIF, HEIC, JPEG XL, JPEG 2000 …) are [`FailureKind::UnsupportedFormat`], not
//! corrupt. Transparent pixels are composited on white. Dimensions are checked against a pixel
//! limit *before* pixels are allocated, so a decompression bomb is a [`FailureKind::TooLarge`]
//! record, not an OOM kill.

mod sniff;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

pub use sniff::{unsupported_format, UNSUPPORTED_FORMATS};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

/// Default pixel limit: Pillow's decompression-bomb error threshold (2 x 89,478,485).
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Why an image could not be embedded: the `kind` column of the failures table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// No bytes: the path does not exist (or is a broken symlink), or a row holds no image.
    Missing,
    /// The file exists but cannot be read (permissions, I/O error).
    Unreadable,
    /// Not a regular file (a directory, FIFO, socket or device): refused without reading it.
    NotAFile,
    /// Zero bytes.
    Empty,
    /// Not a format we know (text, PDF, audio …).
    NotAnImage,
    /// An image format (or a feature of one) this build does not decode: AVIF, HEIC, JPEG XL …
    UnsupportedFormat,
    /// A known format whose data is damaged or truncated.
    Corrupt,
    /// More pixels than the configured limit.
    TooLarge,
    /// The input could not give the image an id (a non-UTF-8 file name, a null id).
    BadName,
    /// The id was already taken by an earlier image of the same input (which was embedded).
    DuplicateId,
    /// The decoder panicked (a bug in a decoder, contained).
    DecoderPanic,
    /// Decoded, but could not be turned into the network input.
    Preprocess,
}

impl FailureKind {
    /// Every kind, in table order.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::Missing,
        FailureKind::Unreadable,
        FailureKind::NotAFile,
        FailureKind::Empty,
        FailureKind::NotAnImage,
        FailureKind::UnsupportedFormat,
        FailureKind::Corrupt,
        FailureKind::TooLarge,
        FailureKind::BadName,
        FailureKind::DuplicateId,
        FailureKind::DecoderPanic,
        FailureKind::Preprocess,
    ];

    /// The text stored in the failures table.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Missing => "missing",
            FailureKind::Unreadable => "unreadable",
            FailureKind::NotAFile => "not-a-file",
            FailureKind::Empty => "empty",
            FailureKind::NotAnImage => "not-an-image",
            FailureKind::UnsupportedFormat => "unsupported-format",
            FailureKind::Corrupt => "corrupt",
            FailureKind::TooLarge => "too-large",
            FailureKind::BadName => "bad-name",
            FailureKind::DuplicateId => "duplicate-id",
            FailureKind::DecoderPanic => "decoder-panic",
            FailureKind::Preprocess => "preprocess",
        }
    }
}

/// One image's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// Category.
    pub kind: FailureKind,
    /// Human-readable reason.
    pub message: String,
}

impl ImageFailure {
    /// A failure of `kind` with its reason.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// A decoded image.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Pixels, alpha composited on white, orientation applied.
    pub rgb: RgbImage,
    /// Width of the original image (SVG: its declared size).
    pub width: u32,
    /// Height of the original image.
    pub height: u32,
}

/// Decoding settings.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Largest width x height accepted.
    pub max_pixels: u64,
    /// Short side, in pixels, that SVGs are rasterised at.
    pub svg_short_side: u32,
    /// DCT-domain downscaling of JPEGs: decode at 1/2, 1/4 or 1/8 scale as long as the short
    /// side stays at least this many pixels (`None`: always decode at full size).
    pub jpeg_min_short_side: Option<u32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { max_pixels: DEFAULT_MAX_PIXELS, svg_short_side: 512, jpeg_min_short_side: None }
    }
}

/// The largest JPEG IDCT reduction (1, 2, 4 or 8) that keeps the short side of a `w x h`
/// image at least `min_short` pixels.
pub fn jpeg_reduction(w: u32, h: u32, min_short: u32) -> u32 {
    let short = w.min(h);
    [8, 4, 2].into_iter().find(|&r| short.div_ceil(r) >= min_short).unwrap_or(1)
}

/// Decodes image bytes; `extension` (of the file or member name, if any) only helps recognise
/// SVG, which has no magic number.
pub fn decode_bytes(
    bytes: &[u8],
    extension: Option<&str>,
    opts: &DecodeOptions,
) -> Result<DecodedImage, ImageFailure> {
    if bytes.is_empty() {
        return Err(ImageFailure::new(FailureKind::Empty, "zero bytes"));
    }
    if let Some(format) = unsupported_format(bytes) {
        return Err(ImageFailure::new(
            FailureKind::UnsupportedFormat,
            format!("{format}: this build does not decode it"),
        ));
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        if looks_like_svg(bytes, extension) {
            render_svg(bytes, opts)
        } else {
            decode_raster(bytes, opts)
        }
    }));
    result.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(ImageFailure::new(FailureKind::DecoderPanic, format!("decoder panicked: {msg}")))
    })
}

fn looks_like_svg(bytes: &[u8], extension: Option<&str>) -> bool {
    let ext = extension.map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("svg" | "svgz")) {
        return true;
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<svg") || (t.starts_with("<?xml") && text.contains("<svg"))
}

fn decode_raster(bytes: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, ImageFailure> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageFailure::new(FailureKind::Unreadable, e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageFailure::new(FailureKind::NotAnImage, "unrecognised file format"));
    };
    let mut reader = reader;
    let mut limits = Limits::default();
    // room for a 16-bit RGBA image at the pixel limit; dimensions are checked below
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8));
    reader.limits(limits);
    if format == image::ImageFormat::Jpeg && jpeg_truncated(bytes) {
        // the decoder would pad the missing scan with grey and succeed
        return Err(ImageFailure::new(
            FailureKind::Corrupt,
            "Jpeg: truncated (no end-of-image marker after the last scan)",
        ));
    }
    let corrupt = |e: image::ImageError| classify(format, e);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > opts.max_pixels {
        return Err(ImageFailure::new(
            FailureKind::TooLarge,
            format!(
                "{w}x{h} = {} pixels exceeds the limit of {} (--max-pixels)",
                u64::from(w) * u64::from(h),
                opts.max_pixels
            ),
        ));
    }
    let orientation = decoder.orientation().ok();
    let reduction = match (format, opts.jpeg_min_short_side) {
        (image::ImageFormat::Jpeg, Some(min)) => jpeg_reduction(w, h, min),
        _ => 1,
    };
    let scaled = if reduction > 1 { decode_jpeg_scaled(bytes, w, h, reduction) } else { None };
    let mut img = match scaled {
        Some(img) => img,
        None => DynamicImage::from_decoder(decoder).map_err(corrupt)?,
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    // the original size, whatever scale the pixels were decoded at (orientation applied)
    let (width, height) = match orientation {
        Some(o) if swaps_axes(o) => (h, w),
        _ => (w, h),
    };
    Ok(DecodedImage { rgb: to_rgb_on_white(img), width, height })
}

fn swaps_axes(o: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation::*;
    matches!(o, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH)
}

/// Decodes a YCbCr or greyscale JPEG at 1/`reduction` scale in the DCT domain; `None` for
/// what it does not handle (CMYK, 16-bit), which then takes the full-size path.
fn decode_jpeg_scaled(bytes: &[u8], w: u32, h: u32, reduction: u32) -> Option<DynamicImage> {
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

/// Whether a JPEG lacks an end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// Inside entropy-coded data FF is always followed by 00 or a restart marker, so FF D9 there
/// is the real end; data appended after it (camera trailers) is allowed.
pub fn jpeg_truncated(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => !bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => true,
    }
}

fn classify(format: image::ImageFormat, e: image::ImageError) -> ImageFailure {
    use image::ImageError;
    match e {
        ImageError::Limits(l) => ImageFailure::new(FailureKind::TooLarge, format!("{format:?}: {l}")),
        ImageError::Unsupported(u) => {
            ImageFailure::new(FailureKind::UnsupportedFormat, format!("{format:?}: unsupported: {u}"))
        }
        ImageError::IoError(io) => {
            ImageFailure::new(FailureKind::Corrupt, format!("{format:?}: truncated or unreadable data: {io}"))
        }
        other => ImageFailure::new(FailureKind::Corrupt, format!("{format:?}: {other}")),
    }
}

/// 8-bit RGB with any alpha composited over white.
pub fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for px in rgba.pixels() {
        let a = u32::from(px[3]);
        for c in &px.0[..3] {
            out.push(((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer sized for w x h RGB")
}

fn fontdb() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_system_fonts();
        Arc::new(db)
    })
    .clone()
}

fn render_svg(bytes: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, ImageFailure> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        resources_dir: None,
        fontdb: fontdb(),
        image_href_resolver: usvg::ImageHrefResolver {
            // data: URLs are part of the image; paths and URLs are never followed
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..Default::default()
    };
    let tree = usvg::Tree::from_data(bytes, &options)
        .map_err(|e| ImageFailure::new(FailureKind::Corrupt, format!("SVG: {e}")))?;
    let size = tree.size();
    let (sw, sh) = (size.width(), size.height());
    let scale = (opts.svg_short_side as f32 / sw.min(sh)).min(4096.0 / sw.max(sh));
    let (w, h) = ((sw * scale).round().max(1.0) as u32, (sh * scale).round().max(1.0) as u32);
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| ImageFailure::new(FailureKind::Corrupt, format!("SVG: cannot render at {w}x{h}")))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    // premultiplied RGBA over white: c + (255 - a)
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for px in pixmap.data().chunks_exact(4) {
        let bg = 255 - px[3];
        out.extend(px[..3].iter().map(|c| c.saturating_add(bg)));
    }
    let rgb = RgbImage::from_raw(w, h, out).expect("buffer sized for w x h RGB");
    Ok(DecodedImage { rgb, width: sw.round() as u32, height: sh.round() as u32 })
}
