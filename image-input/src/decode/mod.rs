//! Image bytes into 8-bit RGB, or a recorded reason why not. Decoding sees bytes and, as a
//! hint for SVG only, the extension of their name: never where they came from.
//!
//! The format is sniffed from the bytes, not the extension. JPEG goes to libjpeg-turbo (feature
//! `turbojpeg`: SIMD, DCT-domain scaling, only the region a centre crop needs), WebP to libwebp
//! (feature `libwebp`); what they leave (CMYK, 12-bit, damaged data, animations) and PNG
//! (8/16-bit, palette, alpha), GIF (first frame), TIFF and BMP to the `image` crate. EXIF
//! orientation is applied. SVG is rasterised with resvg, with external references (files,
//! URLs) refused so an image can never read anything but itself. Formats recognised but not
//! decoded (AVIF, HEIC, JPEG XL, JPEG 2000 …) are [`FailureKind::UnsupportedFormat`], not
//! corrupt. Transparent pixels are composited on white. Dimensions are checked against a pixel
//! limit *before* pixels are allocated, so a decompression bomb is a [`FailureKind::TooLarge`]
//! record, not an OOM kill.

mod jpeg;
mod sniff;
mod svg;
#[cfg(feature = "turbojpeg")]
mod turbo;
#[cfg(feature = "libwebp")]
mod webp;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use jpeg::{centre_region, jpeg_reduction, jpeg_truncated};
pub use sniff::{unsupported_format, UNSUPPORTED_FORMATS};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

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

/// Where decoded pixels lie in the picture: a decoder may return the picture at a reduced
/// scale, and only the part of it a centre crop needs. In the units of the pixels returned,
/// orientation applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Width of the whole picture.
    pub width: u32,
    /// Height of the whole picture.
    pub height: u32,
    /// Column of the picture where the pixels' first column lies.
    pub left: u32,
    /// Row of the picture where the pixels' first row lies.
    pub top: u32,
}

impl Frame {
    /// The frame of pixels that are the whole picture.
    pub fn whole(width: u32, height: u32) -> Self {
        Self { width, height, left: 0, top: 0 }
    }
}

/// A decoded image.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Pixels, alpha composited on white, orientation applied: the whole picture, or the part
    /// of it [`DecodeOptions::centre_crop`] asked for, possibly at a reduced scale.
    pub rgb: RgbImage,
    /// Width of the original image (SVG: its declared size).
    pub width: u32,
    /// Height of the original image.
    pub height: u32,
    /// Where `rgb` lies in the picture at the scale it was decoded at.
    pub frame: Frame,
}

/// The part of an image its consumer reads: the centred square of `fraction` of the short
/// side, to be resized to `output_size` px.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CentreCrop {
    /// Side of the square as a fraction of the short side.
    pub fraction: f64,
    /// Side, in pixels, the square is resized to (which sets the resize filter's support).
    pub output_size: u32,
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
    /// Only this centre square will be read: decoders that can decode part of an image
    /// (libjpeg-turbo) decode just the square and a border, which gives the resize the same
    /// pixels as a whole decode would (`None`: always the whole image).
    pub centre_crop: Option<CentreCrop>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            svg_short_side: 512,
            jpeg_min_short_side: None,
            centre_crop: None,
        }
    }
}

/// Refuses a `w x h` image over the pixel limit, before its pixels are allocated.
fn check_pixels(w: u32, h: u32, opts: &DecodeOptions) -> Result<(), ImageFailure> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > opts.max_pixels {
        return Err(ImageFailure::new(
            FailureKind::TooLarge,
            format!("{w}x{h} = {pixels} pixels exceeds the limit of {} (--max-pixels)", opts.max_pixels),
        ));
    }
    Ok(())
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
        if svg::looks_like_svg(bytes, extension) {
            svg::render(bytes, opts)
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

fn decode_raster(bytes: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, ImageFailure> {
    let Ok(format) = image::guess_format(bytes) else {
        return Err(ImageFailure::new(FailureKind::NotAnImage, "unrecognised file format"));
    };
    if format == ImageFormat::Jpeg {
        let layout = jpeg::Layout::scan(bytes);
        if layout.truncated {
            // decoders would pad the missing data with grey and succeed
            return Err(jpeg::truncated_failure());
        }
        #[cfg(feature = "turbojpeg")]
        if let Some(img) = jpeg::decode_turbo(bytes, &layout, opts)? {
            return Ok(img);
        }
    }
    #[cfg(feature = "libwebp")]
    if format == ImageFormat::WebP {
        if let Some(img) = webp::decode(bytes, opts)? {
            return Ok(img);
        }
    }
    decode_general(bytes, format, opts)
}

/// The `image` crate's decoders: every raster format, and what the fast paths leave.
fn decode_general(
    bytes: &[u8],
    format: ImageFormat,
    opts: &DecodeOptions,
) -> Result<DecodedImage, ImageFailure> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // room for a 16-bit RGBA image at the pixel limit; dimensions are checked below
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8));
    reader.limits(limits);
    let corrupt = |e: image::ImageError| classify(format, e);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, opts)?;
    let orientation = decoder.orientation().ok();
    let reduction = match (format, opts.jpeg_min_short_side) {
        (ImageFormat::Jpeg, Some(min)) => jpeg_reduction(w, h, min),
        _ => 1,
    };
    let scaled = if reduction > 1 { jpeg::decode_scaled_fallback(bytes, w, h, reduction) } else { None };
    let mut img = match scaled {
        Some(img) => img,
        None => DynamicImage::from_decoder(decoder).map_err(corrupt)?,
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    // the original size, whatever scale the pixels were decoded at (orientation applied)
    let (width, height) = match orientation {
        Some(o) if jpeg::swaps_axes(o) => (h, w),
        _ => (w, h),
    };
    let rgb = to_rgb_on_white(img);
    let frame = Frame::whole(rgb.width(), rgb.height());
    Ok(DecodedImage { rgb, width, height, frame })
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
